"""The web UI (`modelyard ui`, and beside the services under `modelyard up`)."""
