"""Face data: the canonical aligned-face template (`template`) and the SynthFace generator."""
