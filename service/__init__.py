"""radiomics-cds: imaging biomarkers for immunotherapy and radiotherapy decision support."""

__version__ = "0.1.0"
