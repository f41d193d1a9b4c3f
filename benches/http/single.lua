-- wrk script: one reading per POST, authenticated with a bearer token.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-token"
wrk.body = '{"device_id": "device-1", "value": 21.5, "timestamp": 1732550000000}'
