-- CoAP requests already stored (src/transports/coap/exchanges.ts), by peer address, port and
-- message id, written in the outbox transaction that stores the request's messages: a
-- retransmission arriving after a crash (the request committed, its 2.01 lost with the process)
-- is answered 2.01 without being stored twice. A ring of slots (slot = n % size): each stored
-- request replaces the oldest row, so the table is bounded with one write per request and never
-- needs a bulk delete; rows older than EXCHANGE_LIFETIME (RFC 7252 §4.8.2) no longer count.
CREATE TABLE coap_exchanges (
  slot INTEGER PRIMARY KEY,
  n INTEGER NOT NULL,
  key TEXT NOT NULL,
  digest TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX coap_exchanges_key ON coap_exchanges (key);
