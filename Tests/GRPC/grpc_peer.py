#!/usr/bin/env python3
"""A real gRPC peer (grpcio) for the mesh's tests: `serve` is the app behind a sidecar,
`call` is the client in front of one. Stubs are compiled from echo.proto at start.

  grpc_peer.py serve --port P --name NAME [--unavailable] [--fail-stream-after N]
      prints "ready" once listening; counts calls per method on stderr at exit.
  grpc_peer.py call --target HOST:PORT --authority SERVICE [--ca ROOT.pem] CASE [ARGS...]
      prints one JSON object: code, details, trailing/initial metadata and the case's results.
"""
import argparse
import json
import os
import sys
import tempfile
import threading
import time

import grpc
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = tempfile.mkdtemp(prefix="mesh-grpc-")
if protoc.main(["protoc", f"-I{HERE}", f"--python_out={OUT}", f"--grpc_python_out={OUT}", "echo.proto"]) != 0:
    sys.exit("protoc failed")
sys.path.insert(0, OUT)
import echo_pb2  # noqa: E402
import echo_pb2_grpc  # noqa: E402

MAX = 64 * 1024 * 1024
OPTIONS = [("grpc.max_send_message_length", MAX), ("grpc.max_receive_message_length", MAX)]


class Echo(echo_pb2_grpc.EchoServicer):
    def __init__(self, name, unavailable, fail_stream_after):
        self.name = name
        self.unavailable = unavailable
        self.fail_stream_after = fail_stream_after
        self.calls = {}
        self.lock = threading.Lock()

    def count(self, method):
        with self.lock:
            self.calls[method] = self.calls.get(method, 0) + 1
            print(json.dumps({"call": method, "instance": self.name, "n": self.calls[method]}), flush=True)

    def caller(self, context):
        return dict(context.invocation_metadata()).get("x-mesh-caller", "")

    def answer(self, request, context):
        if request.delay_ms:
            time.sleep(request.delay_ms / 1000)
        if self.unavailable:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.name} is unavailable")
        if request.fail_code:
            context.set_trailing_metadata([("x-app-trailer", "kept"), ("x-app-detail", "more")])
            code = next(c for c in grpc.StatusCode if c.value[0] == request.fail_code)
            context.abort(code, "the app's own error: ünïcode")

    def Unary(self, request, context):
        self.count("Unary")
        self.answer(request, context)
        metadata = dict(context.invocation_metadata())
        context.send_initial_metadata([("x-app-initial", metadata.get("x-test", ""))])
        context.set_trailing_metadata([("x-app-trailer", "unary")])
        return echo_pb2.EchoReply(text=request.text, caller=self.caller(context), bytes=len(request.payload),
                                  payload=request.payload, instance=self.name)

    def ServerStream(self, request, context):
        self.count("ServerStream")
        self.answer(request, context)
        payload = b"s" * request.size
        for index in range(request.count):
            if self.fail_stream_after and index == self.fail_stream_after:
                context.abort(grpc.StatusCode.UNAVAILABLE, "stream broke")
            yield echo_pb2.EchoReply(index=index, payload=payload, instance=self.name)

    def ClientStream(self, requests, context):
        self.count("ClientStream")
        total, count = 0, 0
        for request in requests:
            total += len(request.payload)
            count += 1
        return echo_pb2.EchoReply(text=str(count), bytes=total, caller=self.caller(context), instance=self.name)

    def Bidi(self, requests, context):
        self.count("Bidi")
        for request in requests:
            yield echo_pb2.EchoReply(text=request.text, index=request.count, instance=self.name)


def serve(args):
    from concurrent import futures
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), options=OPTIONS)
    echo_pb2_grpc.add_EchoServicer_to_server(Echo(args.name, args.unavailable, args.fail_stream_after), server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(json.dumps({"ready": port}), flush=True)
    server.wait_for_termination()


def call(args):
    options = OPTIONS + [("grpc.default_authority", args.authority), ("grpc.enable_retries", 0)]
    if args.ca:
        # TLS (ALPN h2) with SNI and the certificate check for the authority's host.
        with open(args.ca, "rb") as ca:
            credentials = grpc.ssl_channel_credentials(root_certificates=ca.read())
        options.append(("grpc.ssl_target_name_override", args.authority.split(":")[0]))
        channel = grpc.secure_channel(args.target, credentials, options=options)
    else:
        channel = grpc.insecure_channel(args.target, options=options)
    stub = echo_pb2_grpc.EchoStub(channel)
    timeout = args.timeout
    result = {"code": "OK"}
    metadata = [("x-test", "meta-in"), ("x-mesh-caller", "forged")]
    try:
        if args.case == "unary":
            reply, rpc = stub.Unary.with_call(
                echo_pb2.EchoRequest(text="hello", delay_ms=args.delay_ms, fail_code=args.fail_code),
                metadata=metadata, timeout=timeout)
            result.update(text=reply.text, caller=reply.caller, instance=reply.instance,
                          initial=dict(rpc.initial_metadata()), trailing=dict(rpc.trailing_metadata()))
        elif args.case == "unary-many":
            instances = {}
            for _ in range(args.count):
                reply = stub.Unary(echo_pb2.EchoRequest(text="x"), timeout=timeout)
                instances[reply.instance] = instances.get(reply.instance, 0) + 1
            result.update(instances=instances)
        elif args.case == "big":
            payload = os.urandom(args.size)
            reply = stub.Unary(echo_pb2.EchoRequest(payload=payload), timeout=timeout)
            result.update(same=reply.payload == payload, bytes=reply.bytes)
        elif args.case == "server-stream":
            received, total = 0, 0
            calls = stub.ServerStream(echo_pb2.EchoRequest(count=args.count, size=args.size, delay_ms=args.delay_ms), timeout=timeout)
            try:
                for reply in calls:
                    if reply.index != received:
                        raise SystemExit(f"out of order: {reply.index} at {received}")
                    received += 1
                    total += len(reply.payload)
                    if args.read_delay_ms:
                        time.sleep(args.read_delay_ms / 1000)
            finally:
                result.update(received=received, bytes=total)
        elif args.case == "client-stream":
            def requests():
                for _ in range(args.count):
                    yield echo_pb2.EchoRequest(payload=b"c" * args.size)
            reply = stub.ClientStream(requests(), metadata=metadata, timeout=timeout)
            result.update(count=int(reply.text), bytes=reply.bytes, caller=reply.caller)
        elif args.case == "client-stream-twice":
            # Two client streams back to back from one process (a 1 per second rate limit's
            # test: two processes started one after the other may be a second apart); the
            # outcome is the second call's.
            def one():
                yield echo_pb2.EchoRequest(payload=b"c")
            stub.ClientStream(one(), metadata=metadata, timeout=timeout)
            reply = stub.ClientStream(one(), metadata=metadata, timeout=timeout)
            result.update(count=int(reply.text), bytes=reply.bytes, caller=reply.caller)
        elif args.case == "bidi":
            def requests():
                for index in range(args.count):
                    yield echo_pb2.EchoRequest(text=f"m{index}", count=index)
            echoed = 0
            for reply in stub.Bidi(requests(), timeout=timeout):
                if reply.text != f"m{echoed}" or reply.index != echoed:
                    raise SystemExit(f"bidi mismatch at {echoed}: {reply.text}")
                echoed += 1
            result.update(echoed=echoed)
        else:
            sys.exit(f"unknown case {args.case}")
    except grpc.RpcError as error:
        result.update(code=error.code().name, details=error.details(),
                      trailing=dict(error.trailing_metadata() or ()), initial=dict(error.initial_metadata() or ()))
    print(json.dumps(result), flush=True)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--name", default="app")
    s.add_argument("--unavailable", action="store_true")
    s.add_argument("--fail-stream-after", type=int, default=0)
    c = sub.add_parser("call")
    c.add_argument("--target", required=True)
    c.add_argument("--authority", required=True)
    c.add_argument("--ca", help="TLS to the target, trusting this PEM root (else h2c)")
    c.add_argument("--timeout", type=float, default=30)
    c.add_argument("--count", type=int, default=1)
    c.add_argument("--size", type=int, default=0)
    c.add_argument("--delay-ms", type=int, default=0)
    c.add_argument("--fail-code", type=int, default=0)
    c.add_argument("--read-delay-ms", type=int, default=0)
    c.add_argument("case")
    args = parser.parse_args()
    serve(args) if args.mode == "serve" else call(args)


if __name__ == "__main__":
    main()
