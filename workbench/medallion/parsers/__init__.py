"""Silver parsers, one module per payload format; the registry is in ``registry``."""
