"""Property tests of the frame codec: whatever bytes arrive, the decoder either returns
whole frames or raises ProtocolError, and every encodable frame survives any split."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sandlot.agent.protocol import PREFIX, FrameDecoder, ProtocolError, decode_frame, encode_frame

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=40)
)
headers = st.fixed_dictionaries(
    {"sid": st.integers(0, 2**31), "type": st.text(min_size=1, max_size=12)},
    optional={
        "n": st.integers(0, 2**31),
        "extra": st.dictionaries(st.text(max_size=8), json_scalars, max_size=4),
    },
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_crash_the_decoder(data: bytes) -> None:
    try:
        result = decode_frame(data)
    except ProtocolError:
        return
    if result is not None:
        frame, used = result
        assert PREFIX.size <= used <= len(data)
        assert isinstance(frame.header, dict) and isinstance(frame.payload, bytes)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(headers, st.binary(max_size=2048)), min_size=1, max_size=8), st.data())
def test_frames_survive_any_split(
    frames: list[tuple[dict[str, Any], bytes]], data: st.DataObject
) -> None:
    stream = b"".join(encode_frame(header, payload) for header, payload in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    decoder = FrameDecoder()
    received = []
    start = 0
    for cut in [*cuts, len(stream)]:
        received += decoder.feed(stream[start:cut])
        start = cut
    assert decoder.pending == 0
    assert [(f.header, f.payload) for f in received] == frames


@settings(max_examples=200, deadline=None)
@given(headers, st.binary(max_size=512), st.integers(0, 10_000), st.binary(min_size=1, max_size=8))
def test_corrupted_frames_are_refused_or_decoded_never_crash(
    header: dict[str, Any], payload: bytes, position: int, garbage: bytes
) -> None:
    frame = bytearray(encode_frame(header, payload))
    at = position % len(frame)
    frame[at : at + len(garbage)] = garbage
    try:
        decoded = FrameDecoder().feed(bytes(frame))
    except ProtocolError:
        return  # refused: the connection would be dropped, which is the point
    for got in decoded:  # accepted: then it is a well-formed frame, whatever it says
        assert isinstance(got.header["sid"], int) and got.header["sid"] >= 0
        assert isinstance(got.header["type"], str) and isinstance(got.payload, bytes)
