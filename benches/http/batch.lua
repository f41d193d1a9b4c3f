-- wrk script: 1,000 readings per POST as JSON lines, authenticated with a bearer token.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-ndjson"
wrk.headers["Authorization"] = "Bearer bench-token"
local lines = {}
for i = 1, 1000 do
  lines[i] = string.format('{"device_id": "device-1", "value": %d.5, "timestamp": %d}', i % 100, 1732550000000 + i)
end
wrk.body = table.concat(lines, "\n") .. "\n"
