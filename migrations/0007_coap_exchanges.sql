-- CoAP requests already stored (src/transports/coap/exchanges.ts), by peer address, port and
-- message id, written in the outbox transaction that stores the request's messages: a
-- retransmission arriving after a crash (the request committed, its 2.01 lost with the process)
-- is answered 2.01 without being stored twice. The newest rows only: writing row n deletes row
-- n - 200,000, so the table is bounded with a few B-tree operations per request and never needs a
-- bulk delete; rows older than EXCHANGE_LIFETIME (RFC 7252 §4.8.2) no longer count.
CREATE TABLE coap_exchanges (
  n INTEGER PRIMARY KEY,
  key TEXT NOT NULL,
  digest TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX coap_exchanges_key ON coap_exchanges (key);
