"""File formats: what edgeport reads from an artifact (graph summary, int8 coverage, delegation, layer names)."""
