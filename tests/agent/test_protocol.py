"""The agent wire protocol on its own: framing, malformed input, flow-control bookkeeping."""

from __future__ import annotations

import asyncio
import json
import random
import socket

import pytest

from sandlot.agent.protocol import (
    CHUNK_SIZE,
    CREDIT_BATCH,
    DATA,
    MAX_HEADER_SIZE,
    MAX_PAYLOAD_SIZE,
    PREFIX,
    STREAM_WINDOW,
    Frame,
    FrameDecoder,
    FrameWriter,
    Inbox,
    ProtocolError,
    ReceiveWindow,
    SendWindow,
    decode_frame,
    encode_frame,
    read_frame,
)


def raw_frame(header: bytes, payload: bytes = b"") -> bytes:
    return PREFIX.pack(len(header), len(payload)) + header + payload


@pytest.mark.parametrize(
    "payload",
    [b"", b"x", bytes(range(256)) * 10, b"\0" * CHUNK_SIZE, b"\xff" * MAX_PAYLOAD_SIZE],
    ids=["empty", "one-byte", "binary", "chunk", "max"],
)
def test_encode_decode_round_trip(payload: bytes) -> None:
    header = {"sid": 7, "type": DATA, "note": "héllo ✓", "nested": {"a": [1, None, True]}}
    encoded = encode_frame(header, payload)
    decoded = decode_frame(encoded)
    assert decoded is not None
    frame, used = decoded
    assert used == len(encoded)
    assert frame == Frame(header, payload)
    assert (frame.sid, frame.type) == (7, DATA)


def test_decode_waits_for_a_whole_frame() -> None:
    encoded = encode_frame({"sid": 1, "type": "end"}, b"abc")
    for cut in range(len(encoded)):
        assert decode_frame(encoded[:cut]) is None
    assert decode_frame(encoded) is not None


def test_decoder_reassembles_frames_fed_byte_by_byte() -> None:
    frames = [Frame({"sid": i, "type": DATA}, bytes([i]) * i * 100) for i in range(5)] + [
        Frame({"sid": 99, "type": "response", "result": None}, b"")
    ]
    stream = b"".join(encode_frame(f.header, f.payload) for f in frames)
    decoder = FrameDecoder()
    got: list[Frame] = []
    for i in range(len(stream)):
        got.extend(decoder.feed(stream[i : i + 1]))
    assert got == frames
    assert decoder.pending == 0
    # And all at once.
    assert FrameDecoder().feed(stream) == frames


def test_oversize_frames_are_refused_on_both_ends() -> None:
    with pytest.raises(ProtocolError, match="payload"):
        encode_frame({"sid": 1, "type": DATA}, b"x" * (MAX_PAYLOAD_SIZE + 1))
    with pytest.raises(ProtocolError, match="header"):
        encode_frame({"sid": 1, "type": DATA, "blob": "x" * MAX_HEADER_SIZE})
    # A peer announcing an oversize frame is refused from the prefix alone, before
    # anything is buffered.
    with pytest.raises(ProtocolError, match="header"):
        decode_frame(PREFIX.pack(MAX_HEADER_SIZE + 1, 0))
    with pytest.raises(ProtocolError, match="payload"):
        FrameDecoder().feed(PREFIX.pack(10, MAX_PAYLOAD_SIZE + 1))


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"type": "data"}', "stream id"),
        (b'{"sid": -1, "type": "data"}', "stream id"),
        (b'{"sid": true, "type": "data"}', "stream id"),
        (b'{"sid": "1", "type": "data"}', "stream id"),
        (b'{"sid": 1}', "type"),
        (b'{"sid": 1, "type": 5}', "type"),
    ],
)
def test_malformed_headers_are_refused(header: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        decode_frame(raw_frame(header, b"payload"))


def test_fuzzed_input_only_ever_raises_protocol_error() -> None:
    rng = random.Random(1234)
    valid = encode_frame({"sid": 3, "type": DATA, "fd": "stdout"}, b"hello" * 20)
    outcomes = {"frames": 0, "refused": 0, "incomplete": 0}
    for _ in range(3000):
        if rng.random() < 0.5:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        else:
            mutated = bytearray(valid)
            for _ in range(rng.randrange(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            data = bytes(mutated[: rng.randrange(len(mutated) + 1)])
        decoder = FrameDecoder()
        try:
            frames = decoder.feed(data)
        except ProtocolError:
            outcomes["refused"] += 1
            continue
        for frame in frames:
            assert isinstance(frame.header, dict) and isinstance(frame.sid, int)
        outcomes["frames" if frames else "incomplete"] += 1
    assert all(outcomes.values()), outcomes


def _reader_with(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


@pytest.mark.asyncio
async def test_read_frame_from_a_stream() -> None:
    frames = [Frame({"sid": 1, "type": DATA}, b"a" * 70000), Frame({"sid": 2, "type": "end"}, b"")]
    reader = _reader_with(b"".join(encode_frame(f.header, f.payload) for f in frames))
    assert await read_frame(reader) == frames[0]
    assert await read_frame(reader) == frames[1]
    assert await read_frame(reader) is None  # clean end between frames


@pytest.mark.asyncio
async def test_read_frame_refuses_truncated_and_oversize_frames() -> None:
    whole = encode_frame({"sid": 1, "type": DATA}, b"0123456789")
    with pytest.raises(ProtocolError, match="prefix"):
        await read_frame(_reader_with(whole[:5]))
    with pytest.raises(ProtocolError, match="inside a frame"):
        await read_frame(_reader_with(whole[:-3]))
    with pytest.raises(ProtocolError, match="exceeds"):
        await read_frame(_reader_with(PREFIX.pack(1, MAX_PAYLOAD_SIZE + 1), eof=False))
    with pytest.raises(ProtocolError, match="JSON"):
        await read_frame(_reader_with(raw_frame(b"{oops", b"")))


@pytest.mark.asyncio
async def test_frame_writer_over_a_real_socket() -> None:
    left, right = socket.socketpair()
    # Keep all four ends referenced: a collected StreamWriter closes its socket.
    reader, left_writer = await asyncio.open_connection(sock=left)
    right_reader, writer = await asyncio.open_connection(sock=right)
    out = FrameWriter(writer)
    big = bytes(range(256)) * 1024  # large enough to take the separate-payload path
    out.send({"sid": 1, "type": "request", "op": "ping", "args": {}})
    out.send_data(2, big)
    out.send_data(3, b"err", fd="stderr")
    await out.drain()
    first, second, third = [await read_frame(reader) for _ in range(3)]
    assert first == Frame({"sid": 1, "type": "request", "op": "ping", "args": {}}, b"")
    assert second == Frame({"sid": 2, "type": DATA}, big)
    assert third == Frame({"sid": 3, "type": DATA, "fd": "stderr"}, b"err")
    out.close()
    assert await read_frame(reader) is None
    assert out.closed
    with pytest.raises(ConnectionResetError):
        out.send({"sid": 4, "type": "end"})
    assert right_reader is not None
    left_writer.close()


@pytest.mark.asyncio
async def test_send_window_blocks_without_credit_and_resumes_on_grant() -> None:
    window = SendWindow(size=100)
    await window.wait()  # credit available: no wait
    window.consume(150)
    waiter = asyncio.ensure_future(window.wait())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    window.grant(40)  # still not positive
    await asyncio.sleep(0.01)
    assert not waiter.done()
    window.grant(20)
    await asyncio.wait_for(waiter, 1)
    assert window.credit == 10

    window.consume(10)
    blocked = asyncio.ensure_future(window.wait())
    await asyncio.sleep(0)
    window.abort(ConnectionResetError("gone"))
    with pytest.raises(ConnectionResetError, match="gone"):
        await blocked


def test_receive_window_batches_credit_and_catches_overruns() -> None:
    window = ReceiveWindow()
    window.received(CHUNK_SIZE)
    assert window.consumed(CHUNK_SIZE) == 0  # below one batch: nothing to grant yet
    total = CHUNK_SIZE
    grants = []
    while total < STREAM_WINDOW:
        window.received(CHUNK_SIZE)
        grants.append(window.consumed(CHUNK_SIZE))
        total += CHUNK_SIZE
    assert sum(grants) == STREAM_WINDOW and all(g in (0, CREDIT_BATCH) for g in grants)
    assert window.outstanding == 0

    greedy = ReceiveWindow()
    greedy.received(STREAM_WINDOW + MAX_PAYLOAD_SIZE)  # one chunk past the window: tolerated
    with pytest.raises(ProtocolError, match="past its stream window"):
        greedy.received(1)


@pytest.mark.asyncio
async def test_inbox_delivers_in_order_then_raises_once_closed() -> None:
    inbox = Inbox()
    getter = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    inbox.put(Frame({"sid": 1, "type": DATA}, b"1"))
    inbox.put(Frame({"sid": 1, "type": DATA}, b"2"))
    inbox.close(EOFError("closed"))
    assert (await getter).payload == b"1"
    assert (await inbox.get()).payload == b"2"
    with pytest.raises(EOFError):
        await inbox.get()


def test_headers_are_compact_json() -> None:
    encoded = encode_frame({"sid": 1, "type": "credit", "n": 5})
    header_len, payload_len = PREFIX.unpack_from(encoded)
    assert payload_len == 0
    assert encoded[PREFIX.size :] == b'{"sid":1,"type":"credit","n":5}'
    assert json.loads(encoded[PREFIX.size : PREFIX.size + header_len]) == {
        "sid": 1,
        "type": "credit",
        "n": 5,
    }
