-- CoAP requests already stored (src/transports/coap/exchanges.ts), by peer address, port and
-- message id, written in the outbox transaction that stores the request's messages: a
-- retransmission arriving after a crash (the request committed, its 2.01 lost with the process)
-- is answered 2.01 without being stored twice. Rows live for EXCHANGE_LIFETIME (RFC 7252 §4.8.2),
-- and at most a bounded number of them.
CREATE TABLE coap_exchanges (
  key TEXT PRIMARY KEY,
  digest TEXT NOT NULL,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX coap_exchanges_created ON coap_exchanges (created_at);
