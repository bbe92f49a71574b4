"""An edge written with grpcio from proto/outpost/v1/hub.proto alone, delivering to `outpost hub`.

Sends BATCHES batches of PER records (device "py-dev", payload {"n": i, "text": "…"}), then the
first batch once more (a resend: the hub must store it once), waits for every ack and prints one
JSON line with what it sent and what was acknowledged.

usage: py_edge.py GEN_DIR TARGET EDGE_ID ROUTING_KEY SECRET BATCHES PER
"""
import json
import queue
import sys

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
from outpost.v1 import hub_pb2, hub_pb2_grpc  # noqa: E402

TARGET, EDGE, KEY, SECRET = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
BATCHES, PER = int(sys.argv[6]), int(sys.argv[7])


def batch(seq, first):
    records = [
        hub_pb2.Record(
            id=f"py-{i}", device="py-dev", kind="telemetry", ts=1_700_000_000_000 + i,
            payload=json.dumps({"n": i, "text": "température ✓ 温度"}, ensure_ascii=False).encode("utf-8"),
        )
        for i in range(first, first + PER)
    ]
    return hub_pb2.EdgeFrame(batch=hub_pb2.Batch(seq=seq, records=records))


def main():
    outgoing = queue.Queue()
    frames = [batch(s + 1, s * PER) for s in range(BATCHES)]
    frames.append(batch(BATCHES + 1, 0))  # the first batch again, under a new seq
    outgoing.put(hub_pb2.EdgeFrame(report=hub_pb2.Report(type="hello", body=b'{"version":"py"}')))
    for f in frames:
        outgoing.put(f)

    def requests():
        while True:
            f = outgoing.get()
            if f is None:
                return
            yield f

    acked = set()
    with grpc.insecure_channel(TARGET) as channel:
        stub = hub_pb2_grpc.HubStub(channel)
        responses = stub.Connect(requests(), metadata=(("edge-id", EDGE), ("routing-key", KEY), ("secret", SECRET)))
        try:
            for frame in responses:
                if frame.WhichOneof("frame") == "ack":
                    acked.add(frame.ack.seq)
                    if len(acked) == len(frames):
                        outgoing.put(None)
        except grpc.RpcError as error:
            print(json.dumps({"event": "py.edge_failed", "code": error.code().name, "details": error.details()}, separators=(",", ":")),
                  flush=True)
            sys.exit(1)
    print(json.dumps({"event": "py.edge_done", "sent": BATCHES * PER, "batches": len(frames),
                      "acked": sorted(acked)}, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
