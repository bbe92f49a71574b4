"""A hub written with grpcio from proto/outpost/v1/hub.proto alone (the interop test's other side).

Like grpcio's own examples it sends no response headers before its first message: headers go out
with the first ack. Every record it stores (once per (edge, id)) is appended to a JSON-lines file,
with the payload decoded through the standard protobuf runtime and json.

usage: py_hub.py GEN_DIR PORT OUT_FILE EDGE_ID ROUTING_KEY SECRET [--silent]
  --silent: read frames but never answer (the edge then waits for the hub's first word)
"""
import json
import signal
import sys
import threading
from concurrent import futures

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
from outpost.v1 import hub_pb2, hub_pb2_grpc  # noqa: E402

PORT, OUT, EDGE, KEY, SECRET = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
SILENT = "--silent" in sys.argv[7:]
lock = threading.Lock()
held = set()


def log(**fields):
    print(json.dumps(fields, separators=(",", ":")), flush=True)


class Hub(hub_pb2_grpc.HubServicer):
    def Connect(self, request_iterator, context):
        md = dict(context.invocation_metadata())
        if (md.get("edge-id"), md.get("routing-key"), md.get("secret")) != (EDGE, KEY, SECRET):
            log(event="py.rejected", edge=md.get("edge-id"))
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown edge or wrong routing key/secret")
        log(event="py.connected", edge=EDGE)
        for frame in request_iterator:
            kind = frame.WhichOneof("frame")
            if kind == "report":
                log(event="py.report", type=frame.report.type, body=json.loads(frame.report.body))
            elif kind == "batch":
                if SILENT:
                    log(event="py.batch_held", seq=frame.batch.seq)
                    continue
                added = 0
                with lock, open(OUT, "a", encoding="utf-8") as out:
                    for r in frame.batch.records:
                        if (EDGE, r.id) in held:
                            continue
                        held.add((EDGE, r.id))
                        added += 1
                        out.write(json.dumps({
                            "id": r.id, "device": r.device, "kind": r.kind, "ts": r.ts,
                            "topic": r.topic, "payload": json.loads(r.payload.decode("utf-8")),
                        }, ensure_ascii=False) + "\n")
                    out.flush()
                log(event="py.stored", seq=frame.batch.seq, records=len(frame.batch.records), added=added,
                    held=len(held))
                yield hub_pb2.HubFrame(ack=hub_pb2.Ack(seq=frame.batch.seq))
            elif kind == "heartbeat" and not SILENT:
                yield hub_pb2.HubFrame(heartbeat=hub_pb2.Heartbeat(ts=frame.heartbeat.ts))


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    hub_pb2_grpc.add_HubServicer_to_server(Hub(), server)
    server.add_insecure_port(f"127.0.0.1:{PORT}")
    server.start()
    log(event="py.started", port=int(PORT), silent=SILENT)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    server.stop(1).wait()


if __name__ == "__main__":
    main()
