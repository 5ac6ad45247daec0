"""cuneidet.deploy: ONNX export of detectors with a JSON sidecar, and the ONNX Runtime detector."""
