"""Network log: capture of associations and DIMSE operations, Parquet writer and reader."""
