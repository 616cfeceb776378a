// Reads every record test/real/kafka/KafkaTool.java wrote (FILE, one JSON
// line per Kafka record) with the official CloudEvents SDK for Go
// (github.com/cloudevents/sdk-go/v2: its JSON event format, then Validate)
// and checks that the SDK sees what the record holds: id, source, type,
// subject, time, specversion, datacontenttype, the traceid and traceparent
// extensions and the data.
//
//	sdk-go FILE
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"runtime/debug"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

type record struct {
	Topic     string  `json:"topic"`
	Partition int     `json:"partition"`
	Offset    int64   `json:"offset"`
	Key       *string `json:"key"`
	Value     string  `json:"value"`
}

func problems(rec record) []string {
	var raw map[string]any
	if err := json.Unmarshal([]byte(rec.Value), &raw); err != nil {
		return []string{"not JSON: " + err.Error()}
	}
	ev := event.New()
	if err := json.Unmarshal([]byte(rec.Value), &ev); err != nil {
		return []string{"the SDK cannot read it: " + err.Error()}
	}
	if err := ev.Validate(); err != nil {
		return []string{"the SDK finds it invalid: " + err.Error()}
	}
	var out []string
	ext := ev.Extensions()
	seen := map[string]any{"id": ev.ID(), "source": ev.Source(), "type": ev.Type(), "subject": ev.Subject(),
		"specversion": ev.SpecVersion(), "datacontenttype": ev.DataContentType(),
		"traceid": ext["traceid"], "traceparent": ext["traceparent"]}
	for a, v := range seen {
		if fmt.Sprint(v) != fmt.Sprint(raw[a]) && !(v == nil && raw[a] == nil) {
			out = append(out, fmt.Sprintf("%s: SDK %v, record %v", a, v, raw[a]))
		}
	}
	if t, err := time.Parse(time.RFC3339Nano, fmt.Sprint(raw["time"])); err != nil || !t.Equal(ev.Time()) {
		out = append(out, fmt.Sprintf("time: SDK %v, record %v", ev.Time(), raw["time"]))
	}
	var data any
	if err := ev.DataAs(&data); err != nil || !reflect.DeepEqual(data, raw["data"]) {
		out = append(out, "data differs")
	}
	if rec.Key == nil || *rec.Key != ev.Subject() {
		out = append(out, "the key is not the subject")
	}
	return out
}

func main() {
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	version := "?"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/cloudevents/sdk-go/v2" {
				version = d.Version
			}
		}
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	n, bad := 0, 0
	for sc.Scan() {
		var rec record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			fmt.Println("not a record:", err)
			os.Exit(2)
		}
		n++
		if p := problems(rec); len(p) > 0 {
			bad++
			if bad <= 10 {
				fmt.Printf("record %s/%d/%d: %s\n", rec.Topic, rec.Partition, rec.Offset, strings.Join(p, "; "))
			}
		}
	}
	fmt.Printf("go sdk-go %s: %d records, %d read as sent, %d not\n", version, n, n-bad, bad)
	if bad > 0 || n == 0 || sc.Err() != nil {
		os.Exit(1)
	}
}
