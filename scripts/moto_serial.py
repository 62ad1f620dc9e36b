"""moto_server with one request at a time.

moto's server handles requests in threads, and its DynamoDB backend checks a
write's condition and then applies the write without a lock: two conditional writes
racing in two threads can both pass their conditions. Real DynamoDB applies the
conditional writes of an item one at a time, and the lease tests depend on exactly
that, so this runs moto_server (same arguments: -H HOST -p PORT) with every write
served under one lock. Reads stay concurrent: a store decides on what it read and
writes on the condition that the item did not change meanwhile.
"""
import io
import sys
import threading

import moto.server as server

_run_simple = server.run_simple
_lock = threading.Lock()


_WRITES = (
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
    "CreateTable",
    "DeleteTable",
)


def _run_serial(host, port, app, **kwargs):
    def serial(environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.endswith(_WRITES):
            return app(environ, start_response)
        # The body is read before the lock is taken: a client that stalls (or is
        # cancelled) half-way through sending a request holds up only its own thread.
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        if len(body) < length:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"incomplete request body"]
        environ["wsgi.input"] = io.BytesIO(body)
        with _lock:
            # The whole response is made under the lock.
            return list(app(environ, start_response))

    return _run_simple(host, port, serial, **kwargs)


server.run_simple = _run_serial

if __name__ == "__main__":
    server.main(sys.argv[1:])
