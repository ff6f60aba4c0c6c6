"""The gRPC surface: generated protos and the thin v2 / v1beta1 servicers."""
