"""Error types with messages that name the offending file/row/key and say how to fix it."""


class CuneidetError(Exception):
    """Base class of the errors cuneidet raises for bad input or configuration."""


class DataNotFoundError(CuneidetError, FileNotFoundError):
    """The data folder or a required data file is missing."""


class DataFormatError(CuneidetError, ValueError):
    """A data file exists but its content is malformed (missing column, bad bbox string...)."""


class ImageLoadError(CuneidetError, OSError):
    """A photograph is missing, truncated or not an image."""


class ConfigError(CuneidetError, ValueError):
    """A configuration value is invalid or inconsistent."""


class OutputError(CuneidetError, OSError):
    """An output file or folder cannot be written: read-only, not permitted or the disk full."""


class ModelFileError(DataFormatError):
    """An exported model (ONNX graph or its JSON sidecar) is corrupt, foreign or mismatched."""


class UploadRejectedError(CuneidetError):
    """An uploaded file is refused: too large (``status_code`` 413), not a JPEG/PNG/TIFF by
    content or not decodable (415), or the server's disk is full (507)."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code
