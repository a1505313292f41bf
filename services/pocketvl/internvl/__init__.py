"""InternVL2 pieces shared by the Triton models: tiling, templates, checkpoint loading."""
