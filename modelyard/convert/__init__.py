"""Entity <-> protobuf converters, used by servicers and SDK clients alike."""
