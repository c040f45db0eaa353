"""Per-layer int8 diagnosis: metrics shared, one module per file format."""
