module taskevents/daprload

go 1.21
