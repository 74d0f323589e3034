"""The serving service: endpoints over registered model versions, spoken to through the Open
Inference Protocol (inference.GRPCInferenceService) and managed through modelyard.serving.v1.

oip_servicer.py and servicer.py -> dataplane.py / service.py -> endpoints.py (loaded versions,
routing, batching) and store/ (endpoint specs, inference log).
"""
