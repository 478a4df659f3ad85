"""Per-modality encoders: definitions, training (torch, train extra), export, and the shipped ONNX files."""
