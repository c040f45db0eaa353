"""Small file and process helpers shared by every stage (atomic writes, native log capture)."""
