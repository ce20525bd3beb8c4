-- GET /health: the ceiling of the HTTP stack on this machine.
wrk.method = "GET"
wrk.path = "/health"
dofile(os.getenv("BENCH_DIR") .. "/wrk/report.lua")
