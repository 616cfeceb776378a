// daprload: the ceiling of test/bench.sh real. It publishes events straight
// to daprd's HTTP API as fast as a client can, the way the worker does: per
// request (POST /v1.0/publish/{pubsub}/{topic}?metadata.partitionKey=…,
// application/cloudevents+json) or in bulk (POST /v1.0/publish/bulk/…, up to
// -bulk entries a request), -c requests in flight on kept-alive connections,
// each event a copy of -event with its own id and subject, keyed by subject,
// the requests spread over -topics in turn.
//
//	daprload -url http://127.0.0.1:3500 -event ev.json -n 40000 -c 16 [-bulk 500]
//
// Prints "<events published> <seconds> <events/s>"; exits 1 if daprd refused any.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:3500", "daprd's HTTP API")
	pubsub := flag.String("pubsub", "pubsub-kafka", "pub/sub component")
	topics := flag.String("topics", "task-events,task-updates", "topics, taken in turn")
	eventFile := flag.String("event", "", "a CloudEvent (JSON) to send copies of")
	n := flag.Int("n", 40000, "events")
	c := flag.Int("c", 16, "requests in flight")
	bulk := flag.Int("bulk", 0, "entries per bulk request (0: one event per request)")
	flag.Parse()

	raw, err := os.ReadFile(*eventFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var event map[string]any
	if err := json.Unmarshal(raw, &event); err != nil {
		fmt.Fprintln(os.Stderr, "-event:", err)
		os.Exit(2)
	}
	per := 1
	if *bulk > 0 {
		per = *bulk
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *c, DisableCompression: true}}

	// each request's body is built before the clock starts
	var bodies [][]byte
	var keys []string
	for i := 0; i < *n; i += per {
		var entries []map[string]any
		for j := i; j < i+per && j < *n; j++ {
			e := map[string]any{}
			for k, v := range event {
				e[k] = v
			}
			e["id"] = fmt.Sprintf("00000000-0000-4000-8000-%012d", j)
			e["subject"] = fmt.Sprintf("10000000-0000-4000-8000-%012d", j)
			entries = append(entries, map[string]any{"entryId": e["id"], "event": e,
				"contentType": "application/cloudevents+json",
				"metadata":    map[string]string{"partitionKey": e["subject"].(string)}})
		}
		var body []byte
		if *bulk > 0 {
			body, _ = json.Marshal(entries)
		} else {
			body, _ = json.Marshal(entries[0]["event"])
		}
		bodies = append(bodies, body)
		keys = append(keys, entries[0]["metadata"].(map[string]string)["partitionKey"])
	}

	names := strings.Split(*topics, ",")
	var next, published, refused int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := atomic.AddInt64(&next, 1) - 1
				if i >= int64(len(bodies)) {
					return
				}
				topic := names[i%int64(len(names))]
				url := fmt.Sprintf("%s/v1.0/publish/%s/%s?metadata.partitionKey=%s", *base, *pubsub, topic, keys[i])
				ctype := "application/cloudevents+json"
				if *bulk > 0 {
					url = fmt.Sprintf("%s/v1.0/publish/bulk/%s/%s", *base, *pubsub, topic)
					ctype = "application/json"
				}
				resp, err := client.Post(url, ctype, bytes.NewReader(bodies[i]))
				count := int64(per)
				if rest := int64(*n) - i*int64(per); rest < count {
					count = rest
				}
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode/100 != 2 {
					atomic.AddInt64(&refused, count)
					continue
				}
				atomic.AddInt64(&published, count)
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	fmt.Printf("%d %.3f %.0f\n", published, secs, float64(published)/secs)
	if refused > 0 {
		fmt.Fprintf(os.Stderr, "daprload: %d events refused\n", refused)
		os.Exit(1)
	}
}
