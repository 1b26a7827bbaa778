"""The static diagnosis page: the three models exported to ONNX, run in the visitor's browser."""
