-- wrk script of bench/compare/run.
-- The URL's host is the routed name, so wrk puts it in the TLS SNI (and the
-- Host header is given with -H); the connection goes to BENCH_CONNECT
-- (default 127.0.0.1) instead of to what that name would resolve to.
local connect_to = os.getenv("BENCH_CONNECT") or "127.0.0.1"

wrk.resolve = function(host, service)
   wrk.addrs = wrk.lookup(connect_to, service)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH-RESULT {"requests": %d, "bytes": %d, "duration_us": %d, ' ..
      '"err_connect": %d, "err_read": %d, "err_write": %d, "err_status": %d, ' ..
      '"err_timeout": %d, "lat_p50_us": %d, "lat_p99_us": %d}\n',
      summary.requests, summary.bytes, summary.duration,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99)))
end
