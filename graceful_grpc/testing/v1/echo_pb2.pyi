from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Behaviour(_message.Message):
    __slots__ = ("delay_ms", "fail_code", "fail_message", "count", "interval_ms", "gate")
    DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    FAIL_CODE_FIELD_NUMBER: _ClassVar[int]
    FAIL_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    GATE_FIELD_NUMBER: _ClassVar[int]
    delay_ms: int
    fail_code: int
    fail_message: str
    count: int
    interval_ms: int
    gate: str
    def __init__(self, delay_ms: _Optional[int] = ..., fail_code: _Optional[int] = ..., fail_message: _Optional[str] = ..., count: _Optional[int] = ..., interval_ms: _Optional[int] = ..., gate: _Optional[str] = ...) -> None: ...

class EchoRequest(_message.Message):
    __slots__ = ("message", "behaviour")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    BEHAVIOUR_FIELD_NUMBER: _ClassVar[int]
    message: str
    behaviour: Behaviour
    def __init__(self, message: _Optional[str] = ..., behaviour: _Optional[_Union[Behaviour, _Mapping]] = ...) -> None: ...

class EchoResponse(_message.Message):
    __slots__ = ("message", "index", "received")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    message: str
    index: int
    received: int
    def __init__(self, message: _Optional[str] = ..., index: _Optional[int] = ..., received: _Optional[int] = ...) -> None: ...
