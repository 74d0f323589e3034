"""Where a feature view's source may point, for callers without the admin role.

The feature store reads sources with its own file access and its own S3 credentials (those of
the artifact store), and connects to SQL sources from its own place in the network. A source
anywhere would hand whoever defines it what the server can read: other teams' run artifacts,
other views' pushed rows, keys mounted into the pod. So, as Databricks' external locations do,
the operator lists the locations (`features.source_locations`) where editors may point sources;
admins may point them anywhere. The server's own data (its home and the artifact root) is never
a source for anyone else, even inside a listed location.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from modelyard.errors import InvalidArgument, PermissionDenied
from modelyard.features.definitions import FeatureView, FileSource
from modelyard.services.common.validation import shown

# Query parameters a restricted caller's SQL URL may carry: none of them picks another server.
_SAFE_SQL_PARAMS = frozenset({"sslmode", "connect_timeout", "application_name"})
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433}
_TO_FIX = "add its location to features.source_locations, or ask an admin to apply the view"


def location_of(uri: str) -> str:
    """`uri` as a comparable location: scheme://place/path, with `~`, symlinks and `..` of local
    paths resolved and no credentials, query or trailing slash. ValueError for a URI that names
    no place (an empty path would otherwise mean the server's working directory)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = parsed.path if parsed.scheme else uri
        if not path:
            raise ValueError(f"{uri!r} names no path")
        return Path(path).expanduser().resolve().as_uri()
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"{uri!r} names no bucket")
        return f"s3://{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
    try:
        url = make_url(uri)
        backend = url.get_backend_name()
        if backend == "sqlite":  # a local file: file locations cover it
            return location_of(url.database or "")
        port = url.port or _DEFAULT_PORTS.get(backend)
    except ArgumentError:
        raise ValueError(f"{uri!r} is not a path, s3:// URI or database URL") from None
    place = f"{(url.host or '').lower()}{f':{port}' if port else ''}"
    return f"{backend}://{place}/{url.database or ''}".rstrip("/")


def _inside(location: str, parent: str) -> bool:
    return location == parent or location.startswith(parent + "/")


class SourceLocations:
    def __init__(self, allowed: Sequence[str], server_own: Sequence[str]) -> None:
        self.allowed = list(allowed)
        self._allowed = [location_of(u) for u in allowed]
        self._server_own = [location_of(u) for u in server_own]

    def check(self, field: str, view: FeatureView) -> None:
        """Refuse, naming `field`, a source outside the allowed locations."""
        source = view.source
        if isinstance(source, FileSource):
            uri, field = source.path, f"{field}.source.file.path"
        else:
            uri, field = source.url, f"{field}.source.sql.url"
        if ".." in PurePosixPath(urlparse(uri).path).parts:
            raise PermissionDenied(
                f"{field}: {_shown(uri)} climbs out of its folder ('..'); give the path without it",
                resource_type="feature_view",
                resource_name=view.name,
            )
        try:
            where = location_of(uri)
        except ValueError:
            raise InvalidArgument(
                f"{field}: {_shown(uri)} names no place a source can be read from; use a path, "
                "s3://bucket/key or a database URL such as postgresql://host/database",
                field=field,
            ) from None
        if not isinstance(source, FileSource):
            extra = set(make_url(uri).query) - _SAFE_SQL_PARAMS
            if extra:
                raise PermissionDenied(
                    f"{field}: the URL's {', '.join(sorted(extra))} may point it at another "
                    f"server; only {', '.join(sorted(_SAFE_SQL_PARAMS))} are allowed (or "
                    "ask an admin to apply the view)",
                    resource_type="feature_view",
                    resource_name=view.name,
                )
        if any(_inside(where, own) for own in self._server_own):
            raise PermissionDenied(
                f"{field}: {_shown(uri)} is the server's own data (artifacts, pushed rows, "
                "its database); read features from your own tables and files",
                resource_type="feature_view",
                resource_name=view.name,
            )
        if not any(_inside(where, allowed) for allowed in self._allowed):
            listed = ", ".join(self.allowed) or "none are set"
            raise PermissionDenied(
                f"{field}: {_shown(uri)} is outside the locations sources may use "
                f"({listed}); {_TO_FIX}",
                resource_type="feature_view",
                resource_name=view.name,
            )


def _shown(uri: str) -> str:
    """The URI for a message: quoted, cut short, without its password."""
    parsed = urlparse(uri)
    if parsed.password:
        uri = uri.replace(f":{parsed.password}@", ":***@", 1)
    return shown(uri)
