# ruff: noqa
# mypy: ignore-errors
# fmt: off
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RankRequest(_message.Message):
    __slots__ = ("viewer_id", "post_ids", "model_name", "model_version", "author_ids")
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    POST_IDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_IDS_FIELD_NUMBER: _ClassVar[int]
    viewer_id: str
    post_ids: _containers.RepeatedScalarFieldContainer[str]
    model_name: str
    model_version: str
    author_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, viewer_id: _Optional[str] = ..., post_ids: _Optional[_Iterable[str]] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., author_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ScoredPost(_message.Message):
    __slots__ = ("post_id", "score")
    POST_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    post_id: str
    score: float
    def __init__(self, post_id: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class RankResponse(_message.Message):
    __slots__ = ("posts", "model_name", "model_version")
    POSTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    posts: _containers.RepeatedCompositeFieldContainer[ScoredPost]
    model_name: str
    model_version: str
    def __init__(self, posts: _Optional[_Iterable[_Union[ScoredPost, _Mapping]]] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class FeaturesRequest(_message.Message):
    __slots__ = ("viewer_id", "post_ids", "author_ids")
    VIEWER_ID_FIELD_NUMBER: _ClassVar[int]
    POST_IDS_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_IDS_FIELD_NUMBER: _ClassVar[int]
    viewer_id: str
    post_ids: _containers.RepeatedScalarFieldContainer[str]
    author_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, viewer_id: _Optional[str] = ..., post_ids: _Optional[_Iterable[str]] = ..., author_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class FeaturesResponse(_message.Message):
    __slots__ = ("feature_names", "rows", "columns", "values", "schema_fingerprint")
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    rows: int
    columns: int
    values: _containers.RepeatedScalarFieldContainer[float]
    schema_fingerprint: str
    def __init__(self, feature_names: _Optional[_Iterable[str]] = ..., rows: _Optional[int] = ..., columns: _Optional[int] = ..., values: _Optional[_Iterable[float]] = ..., schema_fingerprint: _Optional[str] = ...) -> None: ...
