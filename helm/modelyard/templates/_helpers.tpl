{{/*
Names, labels and the pieces every Modelyard pod shares.
*/}}

{{- define "modelyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped base name; short enough that "-<component>-pods" fits in 63 characters. */}}
{{- define "modelyard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "modelyard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "modelyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelyard
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component: (dict "ctx" $ "component" "tracking") */}}
{{- define "modelyard.componentLabels" -}}
{{ include "modelyard.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "modelyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelyard.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
Labels of a component's pods: (dict "ctx" $ "component" "tracking"). Its workload's labels (the
recommended ones and commonLabels) and podLabels; the labels the workload selects its pods by
win, so that podLabels cannot take a pod out of its Deployment.
*/}}
{{- define "modelyard.podLabels" -}}
{{- $selector := include "modelyard.selectorLabels" . | fromYaml -}}
{{- $labels := include "modelyard.componentLabels" . | fromYaml -}}
{{- toYaml (merge $selector (.ctx.Values.podLabels | default dict) $labels) -}}
{{- end -}}

{{- define "modelyard.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The gRPC services of each Modelyard service (health answers for each of them). */}}
{{- define "modelyard.grpcServices" -}}
auth: [modelyard.auth.v1.AuthService]
tracking: [modelyard.tracking.v1.TrackingService]
registry: [modelyard.registry.v1.ModelRegistryService]
serving: [modelyard.serving.v1.ServingService, inference.GRPCInferenceService]
features: [modelyard.features.v1.FeatureStoreService]
{{- end -}}

{{/* The gRPC services, in start-up order. */}}
{{- define "modelyard.grpcComponents" -}}
auth tracking registry serving features
{{- end -}}

{{/* Services that call others as svc-<service> and so need a service token. */}}
{{- define "modelyard.callers" -}}
{{- $callers := list -}}
{{- range $name := list "tracking" "registry" "serving" "features" -}}
{{- if (index $.Values.services $name).enabled -}}
{{- $callers = append $callers $name -}}
{{- end -}}
{{- end -}}
{{- join "," $callers -}}
{{- end -}}

{{/* host:port of a service: this release's, its externalUri, or empty. */}}
{{- define "modelyard.serviceUri" -}}
{{- $svc := index .ctx.Values.services .component -}}
{{- if $svc.enabled -}}
{{- printf "%s-%s:%d" (include "modelyard.fullname" .ctx) .component (int .ctx.Values.service.port) -}}
{{- else -}}
{{- $svc.externalUri -}}
{{- end -}}
{{- end -}}

{{/*
The host names the UI answers to, as JSON: its Service's names and ui.externalUri's host.
*/}}
{{- define "modelyard.uiHosts" -}}
{{- $name := printf "%s-ui" (include "modelyard.fullname" .) -}}
{{- $ns := .Release.Namespace -}}
{{- $hosts := list $name (printf "%s.%s" $name $ns) (printf "%s.%s.svc" $name $ns) (printf "%s.%s.svc.%s" $name $ns .Values.clusterDomain) -}}
{{- with .Values.services.ui.externalUri -}}
{{- $hosts = append $hosts (regexReplaceAll "^(grpcs?://)?([^:/]+).*$" . "${2}") -}}
{{- end -}}
{{- toJson $hosts -}}
{{- end -}}

{{/* -- Secrets: name and key of every secret value ------------------------------------------ */}}

{{/*
Where each secret value comes from: a Secret the chart makes (dev profile, or the value given
inline) or one referenced by name.
*/}}
{{- define "modelyard.chartDatabaseSecret" -}}
{{- if or .Values.dev.enabled .Values.database.url -}}true{{- end -}}
{{- end -}}

{{- define "modelyard.databaseSecret" -}}
{{- if include "modelyard.chartDatabaseSecret" . -}}
{{- printf "%s-database" (include "modelyard.fullname" .) -}}
{{- else -}}
{{- required "database.existingSecret or database.url is required (or dev.enabled=true)" .Values.database.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "modelyard.databaseSecretKey" -}}
{{- if include "modelyard.chartDatabaseSecret" . -}}url{{- else -}}{{ .Values.database.existingSecretKey }}{{- end -}}
{{- end -}}

{{- define "modelyard.chartS3Secret" -}}
{{- if or .Values.dev.enabled .Values.s3.accessKey -}}true{{- end -}}
{{- end -}}

{{/* Empty when the pods use their own cloud identity. */}}
{{- define "modelyard.s3Secret" -}}
{{- if include "modelyard.chartS3Secret" . -}}
{{- printf "%s-s3" (include "modelyard.fullname" .) -}}
{{- else -}}
{{- .Values.s3.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "modelyard.s3AccessKeyKey" -}}
{{- if include "modelyard.chartS3Secret" . -}}accessKey{{- else -}}{{ .Values.s3.accessKeyKey }}{{- end -}}
{{- end -}}

{{- define "modelyard.s3SecretKeyKey" -}}
{{- if include "modelyard.chartS3Secret" . -}}secretKey{{- else -}}{{ .Values.s3.secretKeyKey }}{{- end -}}
{{- end -}}

{{- define "modelyard.chartRedisSecret" -}}
{{- if or .Values.dev.enabled .Values.redis.uri -}}true{{- end -}}
{{- end -}}

{{- define "modelyard.redisSecret" -}}
{{- if include "modelyard.chartRedisSecret" . -}}
{{- printf "%s-redis" (include "modelyard.fullname" .) -}}
{{- else -}}
{{- required "redis.existingSecret or redis.uri is required with services.features.enabled (or dev.enabled=true)" .Values.redis.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "modelyard.redisSecretKey" -}}
{{- if include "modelyard.chartRedisSecret" . -}}uri{{- else -}}{{ .Values.redis.existingSecretKey }}{{- end -}}
{{- end -}}

{{- define "modelyard.signingKeySecret" -}}
{{- default (printf "%s-signing-key" (include "modelyard.fullname" .)) .Values.auth.signingKey.existingSecret -}}
{{- end -}}

{{- define "modelyard.serviceTokensSecret" -}}
{{- default (printf "%s-service-tokens" (include "modelyard.fullname" .)) .Values.auth.serviceTokens.existingSecret -}}
{{- end -}}

{{- define "modelyard.tlsSecret" -}}
{{- default (printf "%s-tls" (include "modelyard.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{/* The Secret with the endpoint pods' environment: given, or made by the chart when it knows
the database URL and S3 keys itself. */}}
{{- define "modelyard.endpointEnvSecret" -}}
{{- with .Values.services.serving.controller.envSecret -}}
{{- . -}}
{{- else -}}
{{- if not (and (include "modelyard.chartDatabaseSecret" .) (or (include "modelyard.chartS3Secret" .) (not .Values.s3.existingSecret))) -}}
{{- fail "services.serving.controller.envSecret: name the Secret with the endpoint pods' environment (the chart makes one only when it holds the database URL and S3 keys itself)" -}}
{{- end -}}
{{- printf "%s-endpoint-env" (include "modelyard.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The files endpoint pods read, as JSON {path: "<secret>/<key>"}: the same paths the
ConfigMap names, from the same Secrets the services mount (never the private signing key). */}}
{{- define "modelyard.endpointSecretFiles" -}}
{{- $files := dict -}}
{{- if .Values.auth.enabled -}}
{{- $_ := set $files "/etc/modelyard/signing-key/public.pem" (printf "%s/public.pem" (include "modelyard.signingKeySecret" .)) -}}
{{- end -}}
{{- if .Values.tls.enabled -}}
{{- range $key := list "tls.crt" "tls.key" "ca.crt" -}}
{{- $_ := set $files (printf "/etc/modelyard/tls/%s" $key) (printf "%s/%s" (include "modelyard.tlsSecret" $) $key) -}}
{{- end -}}
{{- end -}}
{{- with .Values.database.caSecret -}}
{{- $_ := set $files "/etc/modelyard/database-ca/ca.crt" (printf "%s/%s" . $.Values.database.caSecretKey) -}}
{{- end -}}
{{- with .Values.s3.caSecret -}}
{{- $_ := set $files "/etc/modelyard/s3-ca/ca.crt" (printf "%s/%s" . $.Values.s3.caSecretKey) -}}
{{- end -}}
{{- toJson $files -}}
{{- end -}}

{{/* Whether the chart itself makes the key pair (hook Job) and mints service tokens (auth pod). */}}
{{- define "modelyard.generateSigningKey" -}}
{{- if and .Values.auth.enabled (not .Values.auth.signingKey.existingSecret) -}}true{{- end -}}
{{- end -}}

{{/* Whether the key hook Job makes the TLS Secret and the UI's cookie-signing key. */}}
{{- define "modelyard.generateTls" -}}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) -}}true{{- end -}}
{{- end -}}

{{- define "modelyard.generateUiSecret" -}}
{{- if .Values.services.ui.enabled -}}true{{- end -}}
{{- end -}}

{{/* Whether the key hook Job makes the dev profile's passwords (PostgreSQL, MinIO, Redis). */}}
{{- define "modelyard.generateDevSecrets" -}}
{{- if .Values.dev.enabled -}}true{{- end -}}
{{- end -}}

{{- define "modelyard.generatesSecrets" -}}
{{- if or (include "modelyard.generateSigningKey" .) (include "modelyard.mintServiceTokens" .) (include "modelyard.generateTls" .) (include "modelyard.generateUiSecret" .) (include "modelyard.generateDevSecrets" .) -}}true{{- end -}}
{{- end -}}

{{/* Whether the chart (a template, or with the dev profile the key hook Job) makes the endpoint
pods' environment Secret. */}}
{{- define "modelyard.chartEndpointEnv" -}}
{{- $controller := .Values.services.serving.controller -}}
{{- if and .Values.services.serving.enabled $controller.enabled (not $controller.envSecret) -}}true{{- end -}}
{{- end -}}

{{/* The endpoint pods' environment but the database URL and S3 keys, as JSON: the ConfigMap's,
less what only the chart's own pods use. */}}
{{- define "modelyard.endpointEnvConfig" -}}
{{- $config := include (print .Template.BasePath "/configmap.yaml") . | fromYaml -}}
{{- $env := dict -}}
{{- range $key, $value := $config.data -}}
{{- if not (has $key (list "MODELYARD_HOME" "MODELYARD_MIGRATE_ON_START" "MODELYARD_SERVING__REGISTRY_URI" "MODELYARD_SERVING__FEATURES_URI" "MODELYARD_METRICS_PORT")) -}}
{{- $_ := set $env $key (toString $value) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $env "MODELYARD_MIGRATE_ON_START" "false" -}}
{{- /* The CA files are among the pods' secret files (modelyard.endpointSecretFiles). */ -}}
{{- if .Values.database.caSecret -}}
{{- $_ := set $env "PGSSLROOTCERT" "/etc/modelyard/database-ca/ca.crt" -}}
{{- end -}}
{{- if .Values.s3.caSecret -}}
{{- $_ := set $env "MODELYARD_S3__CA_FILE" "/etc/modelyard/s3-ca/ca.crt" -}}
{{- end -}}
{{- toJson $env -}}
{{- end -}}

{{/* The names the generated certificate covers, comma-separated: every service by each of its
names, localhost (port-forwards), the endpoint Services with the controller on, the ingress host
and tls.extraDnsNames. */}}
{{- define "modelyard.tlsDnsNames" -}}
{{- $fullname := include "modelyard.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list "localhost" $fullname (printf "%s.%s.svc" $fullname $ns) -}}
{{- range $component := list "auth" "tracking" "registry" "serving" "features" "ui" "gateway" -}}
{{- $svc := printf "%s-%s" $fullname $component -}}
{{- $names = concat $names (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns $.Values.clusterDomain)) -}}
{{- end -}}
{{- if and .Values.services.serving.enabled .Values.services.serving.controller.enabled -}}
{{- $names = concat $names (list (printf "*.%s.svc" $ns) (printf "*.%s.svc.%s" $ns $.Values.clusterDomain)) -}}
{{- end -}}
{{- if .Values.ingress.enabled -}}
{{- $names = append $names .Values.ingress.host -}}
{{- end -}}
{{- $names = concat $names .Values.tls.extraDnsNames -}}
{{- join "," $names -}}
{{- end -}}

{{/* Secret .name as stored in the cluster (JSON), {} without one (`helm template`). */}}
{{- define "modelyard.storedSecret" -}}
{{- toJson (lookup "v1" "Secret" .ctx.Release.Namespace .name | default dict) -}}
{{- end -}}

{{/* The data (JSON) of Secret .name when it exists as a release object of this release (made by
an older chart's template), else empty: such a Secret stays rendered, as it is. */}}
{{- define "modelyard.keptSecretData" -}}
{{- $old := include "modelyard.storedSecret" . | fromJson -}}
{{- if $old -}}
{{- $annotations := $old.metadata.annotations | default dict -}}
{{- if eq (get $annotations "meta.helm.sh/release-name" | toString) .ctx.Release.Name -}}
{{- toJson $old.data -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The pods that call the Kubernetes API, by component, comma-separated: the only ones the
NetworkPolicies give egress to it (networkPolicy.kubeApi). */}}
{{- define "modelyard.kubeApiClients" -}}
{{- $clients := list -}}
{{- if include "modelyard.generatesSecrets" . }}{{ $clients = append $clients "keys" }}{{ end -}}
{{- if include "modelyard.mintServiceTokens" . }}{{ $clients = concat $clients (list "auth" "token-renewal") }}{{ end -}}
{{- if and .Values.services.serving.enabled .Values.services.serving.controller.enabled }}{{ $clients = append $clients "serving" }}{{ end -}}
{{- join "," $clients -}}
{{- end -}}

{{- define "modelyard.mintServiceTokens" -}}
{{- if and .Values.auth.enabled .Values.services.auth.enabled (not .Values.auth.serviceTokens.existingSecret) -}}true{{- end -}}
{{- end -}}

{{/* -- Security contexts (Pod Security "restricted") ------------------------------------------- */}}

{{- define "modelyard.podSecurityContext" -}}
runAsNonRoot: true
{{- with .Values.securityContext.runAsUser }}
runAsUser: {{ . }}
{{- end }}
{{- with .Values.securityContext.runAsGroup }}
runAsGroup: {{ . }}
{{- end }}
{{- with .Values.securityContext.fsGroup }}
fsGroup: {{ . }}
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* A pod security context for a third-party image running as `uid`. */}}
{{- define "modelyard.podSecurityContextFor" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "modelyard.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* -- Environment and volumes of the Modelyard service pods --------------------------------- */}}

{{- define "modelyard.databaseEnv" -}}
- name: MODELYARD_BACKEND_STORE_URI
  valueFrom:
    secretKeyRef:
      name: {{ include "modelyard.databaseSecret" . }}
      key: {{ include "modelyard.databaseSecretKey" . }}
{{- if .Values.database.caSecret }}
# libpq's sslrootcert, for sslmode=verify-full (the default, ~/.postgresql/root.crt, is not there).
- name: PGSSLROOTCERT
  value: /etc/modelyard/database-ca/ca.crt
{{- end }}
{{- end -}}

{{/* Volumes and mounts of the CA certificates of the database and S3 (database.caSecret,
s3.caSecret), for every pod that connects to them. */}}
{{- define "modelyard.caVolumes" -}}
{{- with .Values.database.caSecret }}
- name: database-ca
  secret:
    secretName: {{ . }}
    defaultMode: 0444
    items:
      - {key: {{ $.Values.database.caSecretKey }}, path: ca.crt}
{{- end }}
{{- with .Values.s3.caSecret }}
- name: s3-ca
  secret:
    secretName: {{ . }}
    defaultMode: 0444
    items:
      - {key: {{ $.Values.s3.caSecretKey }}, path: ca.crt}
{{- end }}
{{- end -}}

{{- define "modelyard.caVolumeMounts" -}}
{{- if .Values.database.caSecret }}
- name: database-ca
  mountPath: /etc/modelyard/database-ca
  readOnly: true
{{- end }}
{{- if .Values.s3.caSecret }}
- name: s3-ca
  mountPath: /etc/modelyard/s3-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "modelyard.s3Env" -}}
{{- if .Values.s3.caSecret }}
- name: MODELYARD_S3__CA_FILE
  value: /etc/modelyard/s3-ca/ca.crt
{{- end }}
{{- $secret := include "modelyard.s3Secret" . -}}
{{- if $secret }}
- name: MODELYARD_S3__ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ include "modelyard.s3AccessKeyKey" . }}
- name: MODELYARD_S3__SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ include "modelyard.s3SecretKeyKey" . }}
{{- end }}
{{- end -}}

{{/* The environment of one gRPC service's container: (dict "ctx" $ "component" "tracking") */}}
{{- define "modelyard.serviceEnv" -}}
{{- $ := .ctx -}}
{{- $c := .component -}}
{{ include "modelyard.databaseEnv" $ }}
{{- if ne $c "auth" }}
{{- include "modelyard.s3Env" $ }}
{{- end }}
{{- if and $.Values.auth.enabled (ne $c "auth") }}
# A mounted file, not an environment variable: the renewed token reaches the running process.
- name: MODELYARD_AUTH__SERVICE_TOKEN_FILE
  value: /etc/modelyard/service-token/token
{{- end }}
{{- if eq $c "auth" }}
{{- if $.Values.auth.enabled }}
- name: MODELYARD_AUTH__PRIVATE_KEY_FILE
  value: /etc/modelyard/signing-key/private.pem
{{- end }}
{{- end }}
{{- if eq $c "serving" }}
- name: MODELYARD_SERVING__CACHE_DIR
  value: /var/lib/modelyard/model-cache
{{- with $.Values.services.serving.controller }}
{{- if .enabled }}
- name: MODELYARD_SERVING__CLUSTER__ENABLED
  value: "true"
# Endpoint objects are this release's: named <fullname>-ep-<endpoint> and labelled with it.
- name: MODELYARD_SERVING__CLUSTER__INSTANCE
  value: {{ include "modelyard.fullname" $ | quote }}
- name: MODELYARD_SERVING__CLUSTER__IMAGE
  value: {{ include "modelyard.image" $ | quote }}
- name: MODELYARD_SERVING__CLUSTER__IMAGE_PULL_POLICY
  value: {{ $.Values.image.pullPolicy | quote }}
# The chart's pod user and groups (securityContext), those set only.
{{- $user := dict }}
{{- range $key, $id := $.Values.securityContext }}{{ if $id }}{{ $_ := set $user $key (int $id) }}{{ end }}{{ end }}
- name: MODELYARD_SERVING__CLUSTER__POD_SECURITY_CONTEXT
  value: {{ $user | toJson | quote }}
- name: MODELYARD_SERVING__CLUSTER__SERVICE_ACCOUNT
  value: {{ printf "%s-endpoint" (include "modelyard.fullname" $) | quote }}
- name: MODELYARD_SERVING__CLUSTER__ENV_SECRET
  value: {{ include "modelyard.endpointEnvSecret" $ | quote }}
- name: MODELYARD_SERVING__CLUSTER__SECRET_FILES
  value: {{ include "modelyard.endpointSecretFiles" $ | quote }}
# Endpoint pods read their environment at start: a changed Secret value, or a changed setting
# in the environment Secret the chart makes them, must roll them too.
{{- $checksums := dict "checksum/secrets" (include "modelyard.chartSecretsInput" $ | sha256sum) }}
{{- if include "modelyard.chartEndpointEnv" $ }}
{{- $_ := set $checksums "checksum/config" (include "modelyard.endpointEnvConfig" $ | sha256sum) }}
{{- end }}
- name: MODELYARD_SERVING__CLUSTER__POD_ANNOTATIONS
  value: {{ merge $checksums (.podAnnotations | default dict) | toJson | quote }}
{{- if $.Values.auth.enabled }}
- name: MODELYARD_SERVING__CLUSTER__SERVICE_TOKEN_SECRET
  value: {{ include "modelyard.serviceTokensSecret" $ | quote }}
{{- end }}
- name: MODELYARD_SERVING__CLUSTER__REGISTRY_URI
  value: {{ include "modelyard.serviceUri" (dict "ctx" $ "component" "registry") | quote }}
- name: MODELYARD_SERVING__CLUSTER__FEATURES_URI
  value: {{ include "modelyard.serviceUri" (dict "ctx" $ "component" "features") | quote }}
- name: MODELYARD_SERVING__CLUSTER__REQUESTS
  value: {{ .resources.requests | toJson | quote }}
- name: MODELYARD_SERVING__CLUSTER__LIMITS
  value: {{ .resources.limits | toJson | quote }}
- name: MODELYARD_SERVING__CLUSTER__MIN_REPLICAS
  value: {{ .minReplicas | quote }}
- name: MODELYARD_SERVING__CLUSTER__MAX_REPLICAS
  value: {{ .maxReplicas | quote }}
- name: MODELYARD_SERVING__CLUSTER__TARGET_CPU_PERCENT
  value: {{ .targetCPUPercent | quote }}
- name: MODELYARD_SERVING__CLUSTER__NODE_SELECTOR
  value: {{ .nodeSelector | default dict | toJson | quote }}
- name: MODELYARD_SERVING__CLUSTER__TOLERATIONS
  value: {{ .tolerations | default list | toJson | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq $c "features" }}
- name: MODELYARD_FEATURES__ONLINE_STORE_URI
  valueFrom:
    secretKeyRef:
      name: {{ include "modelyard.redisSecret" $ }}
      key: {{ include "modelyard.redisSecretKey" $ }}
{{- end }}
{{- with (index $.Values.services $c).extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volumes of a gRPC service pod: (dict "ctx" $ "component" "tracking") */}}
{{- define "modelyard.serviceVolumes" -}}
{{- $ := .ctx -}}
- name: home
  emptyDir:
    sizeLimit: {{ if eq .component "serving" }}{{ $.Values.services.serving.modelCacheSize }}{{ else }}1Gi{{ end }}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- if ne .component "ui" }}
{{- with (include "modelyard.caVolumes" $ | trim) }}
{{ . }}
{{- end }}
{{- end }}
{{- if $.Values.auth.enabled }}
- name: signing-key
  secret:
    secretName: {{ include "modelyard.signingKeySecret" $ }}
    defaultMode: 0440
    items:
      {{- if eq .component "auth" }}
      - {key: private.pem, path: private.pem}
      {{- end }}
      - {key: public.pem, path: public.pem}
{{- end }}
{{- if $.Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ include "modelyard.tlsSecret" $ }}
    defaultMode: 0440
    items:
      - {key: tls.crt, path: tls.crt}
      - {key: tls.key, path: tls.key}
      - {key: ca.crt, path: ca.crt}
{{- end }}
{{- if and $.Values.auth.enabled (ne .component "auth") (ne .component "ui") }}
# This service's token (key <service> of the tokens Secret). Mounted whole (no subPath) so the
# kubelet swaps in a renewed token, which the process reads again when the file changes.
- name: service-token
  secret:
    secretName: {{ include "modelyard.serviceTokensSecret" $ }}
    defaultMode: 0440
    items:
      - {key: {{ .component }}, path: token}
{{- end }}
{{- end -}}

{{- define "modelyard.serviceTokenVolumeMount" -}}
- name: service-token
  mountPath: /etc/modelyard/service-token
  readOnly: true
{{- end -}}

{{- define "modelyard.serviceVolumeMounts" -}}
- name: home
  mountPath: /var/lib/modelyard
- name: tmp
  mountPath: /tmp
{{- with (include "modelyard.caVolumeMounts" . | trim) }}
{{ . }}
{{- end }}
{{- if .Values.auth.enabled }}
- name: signing-key
  mountPath: /etc/modelyard/signing-key
  readOnly: true
{{- end }}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/modelyard/tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* The labels of this release's endpoint pods (the serving controller's instance). */}}
{{- define "modelyard.endpointPodLabels" -}}
app.kubernetes.io/component: endpoint
app.kubernetes.io/managed-by: modelyard
modelyard.io/instance: {{ include "modelyard.fullname" . }}
{{- end -}}

{{/* A projected service-account token, mounted only into the container that calls the API. */}}
{{- define "modelyard.kubeApiVolume" -}}
- name: kube-api-access
  projected:
    defaultMode: 0440
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: 3607
      - configMap:
          name: kube-root-ca.crt
          items:
            - {key: ca.crt, path: ca.crt}
      - downwardAPI:
          items:
            - path: namespace
              fieldRef:
                fieldPath: metadata.namespace
{{- end -}}

{{- define "modelyard.kubeApiVolumeMount" -}}
- name: kube-api-access
  mountPath: /var/run/secrets/kubernetes.io/serviceaccount
  readOnly: true
{{- end -}}

{{/*
Native gRPC probes, on the plaintext health port when the API port speaks TLS. Readiness asks
for the service's own gRPC service name: (dict "ctx" $ "service" "modelyard.tracking.v1...")
*/}}
{{- define "modelyard.grpcProbes" -}}
{{- $v := .ctx.Values -}}
{{- $port := ternary $v.health.port $v.service.port $v.tls.enabled -}}
startupProbe:
  grpc:
    port: {{ $port }}
  periodSeconds: 5
  failureThreshold: 60
readinessProbe:
  grpc:
    port: {{ $port }}
    service: {{ .service }}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
livenessProbe:
  grpc:
    port: {{ $port }}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
{{- end -}}

{{/*
What the chart puts into its Secrets from the values (database URL, S3 keys, Redis URI), hashed
into the pods' annotations: environment from a Secret is read at pod start, so a changed value
needs a rollout. Generated dev passwords are left out: a render makes new ones before `lookup`
reads the stored ones back, and once made they never change.
*/}}
{{- define "modelyard.chartSecretsInput" -}}
{{- $v := .Values -}}
{{- toJson (list $v.database.url $v.s3.accessKey $v.s3.secretKey $v.redis.uri) -}}
{{- end -}}

{{- define "modelyard.podAnnotations" -}}
{{- $annotations := dict "checksum/config" (include (print .ctx.Template.BasePath "/configmap.yaml") .ctx | sha256sum) -}}
{{- $_ := set $annotations "checksum/secrets" (include "modelyard.chartSecretsInput" .ctx | sha256sum) -}}
{{- if .ctx.Values.metrics.enabled -}}
{{- $_ := set $annotations "prometheus.io/scrape" "true" -}}
{{- $_ := set $annotations "prometheus.io/port" (toString .ctx.Values.metrics.port) -}}
{{- $_ := set $annotations "prometheus.io/path" "/metrics" -}}
{{- end -}}
{{- toYaml (merge $annotations (.ctx.Values.podAnnotations | default dict)) -}}
{{- end -}}

{{/* Scheduling fields of a component's values. */}}
{{- define "modelyard.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* host and port of a URI such as postgresql://u:p@host:5432/db, for network policies. */}}
{{- define "modelyard.uriPort" -}}
{{- $m := regexFind ":[0-9]+(/|$)" .uri -}}
{{- if $m -}}{{ trimSuffix "/" (trimPrefix ":" $m) }}{{- else -}}{{ .default }}{{- end -}}
{{- end -}}
