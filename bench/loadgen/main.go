// Command loadgen drives a KMS plugin over its UNIX socket as kube-apiserver
// does: one gRPC connection with N calls in flight, closed loop. It is the
// benchmark's load generator, written in Go so that the client is never the
// bottleneck (a Python client costs ~200-260 µs of CPU per call).
//
// It times every call started in a fixed window (after a warm-up) with the
// monotonic clock, and reports percentiles, throughput, its own CPU and,
// when given the server's pid, the server's CPU over the same window, read
// from /proc/PID/stat. Several processes can share one window (-start-at)
// so the runner can merge their raw latencies.
package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	v1 "k8s.io/kms/apis/v1beta1"
	v2 "k8s.io/kms/apis/v2"
)

type options struct {
	socket    string
	method    string
	inflight  int
	warmup    time.Duration
	duration  time.Duration
	calls     int
	distinct  int
	size      int
	serverPID int
	startAt   int64
	ctFile    string
	rawFile   string
	timeout   time.Duration
}

// corpus is what decrypt calls replay: ciphertexts made by the server itself.
type corpus struct {
	Method  string              `json:"method"`
	Items   []corpusItem        `json:"items"`
	Unused  map[string]struct{} `json:"-"`
	created bool
}

type corpusItem struct {
	Ciphertext  []byte            `json:"c"`
	KeyID       string            `json:"k,omitempty"`
	Annotations map[string][]byte `json:"a,omitempty"`
}

type result struct {
	Method              string           `json:"method"`
	Inflight            int              `json:"inflight"`
	Calls               int              `json:"calls"`
	Errors              int64            `json:"errors"`
	FirstError          string           `json:"first_error,omitempty"`
	WindowS             float64          `json:"window_s"`
	CallsPerS           float64          `json:"calls_per_s"`
	P50us               float64          `json:"p50_us"`
	P90us               float64          `json:"p90_us"`
	P99us               float64          `json:"p99_us"`
	P999us              float64          `json:"p999_us"`
	MaxUs               float64          `json:"max_us"`
	MeanUs              float64          `json:"mean_us"`
	ClientCPUs          float64          `json:"client_cpu_s"`
	ServerCPUs          *float64         `json:"server_cpu_s,omitempty"`
	ServerRSSKiB        int64            `json:"server_rss_kib,omitempty"`
	KeyIDFirstSeen      map[string]int64 `json:"key_id_first_seen_unix_ns,omitempty"`
	Late                bool             `json:"late_start,omitempty"`
	Distinct            int              `json:"distinct"`
	CorpusCreated       bool             `json:"corpus_created,omitempty"`
	WindowStartUnixNano int64            `json:"window_start_unix_ns"`
}

func main() {
	var o options
	flag.StringVar(&o.socket, "socket", "", "plugin UNIX socket path")
	flag.StringVar(&o.method, "method", "v2enc", "status|v2enc|v2dec|v1enc|v1dec|v1version")
	flag.IntVar(&o.inflight, "inflight", 1, "calls in flight on the one connection")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up before the window")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured window")
	flag.IntVar(&o.calls, "calls", 0, "fixed-count mode: make exactly this many calls (no warm-up) and time them all")
	flag.IntVar(&o.distinct, "distinct", 1, "distinct DEKs (decrypt: ciphertexts replayed round-robin)")
	flag.IntVar(&o.size, "size", 32, "plaintext bytes (a DEK is 32)")
	flag.IntVar(&o.serverPID, "server-pid", 0, "server pid whose CPU is read over the window")
	flag.Int64Var(&o.startAt, "start-at", 0, "unix ns at which warm-up starts (shared by several processes)")
	flag.StringVar(&o.ctFile, "corpus", "", "decrypt corpus file: loaded if present, else created and saved")
	flag.StringVar(&o.rawFile, "raw", "", "write every window latency (uint32 ns, little-endian) here")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Second, "per-call deadline")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.socket == "" || o.inflight < 1 || o.distinct < 1 {
		return errors.New("need -socket, -inflight >= 1, -distinct >= 1")
	}
	conn, err := grpc.NewClient("unix://"+o.socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(4<<20)))
	if err != nil {
		return err
	}
	defer conn.Close()
	c := &caller{v2: v2.NewKeyManagementServiceClient(conn), v1: v1.NewKeyManagementServiceClient(conn),
		timeout: o.timeout, seen: map[string]int64{}}
	call, err := c.prepare(o)
	if err != nil {
		return err
	}
	res := measure(o, c, call)
	res.CorpusCreated = c.corpus != nil && c.corpus.created
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	return nil
}

type caller struct {
	v2      v2.KeyManagementServiceClient
	v1      v1.KeyManagementServiceClient
	timeout time.Duration
	corpus  *corpus
	mu      sync.Mutex
	seen    map[string]int64
}

func (c *caller) noteKeyID(id string) {
	c.mu.Lock()
	if _, ok := c.seen[id]; !ok {
		c.seen[id] = time.Now().UnixNano()
	}
	c.mu.Unlock()
}

func dek(size int) []byte {
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

// prepare returns the call to repeat; the index picks the DEK/ciphertext.
func (c *caller) prepare(o options) (func(ctx context.Context, i int) error, error) {
	plains := make([][]byte, min(o.distinct, 4096))
	for i := range plains {
		plains[i] = dek(o.size)
	}
	switch o.method {
	case "status":
		return func(ctx context.Context, _ int) error {
			r, err := c.v2.Status(ctx, &v2.StatusRequest{})
			if err == nil && r.Healthz != "ok" {
				return fmt.Errorf("healthz %q", r.Healthz)
			}
			return err
		}, nil
	case "v1version":
		return func(ctx context.Context, _ int) error {
			_, err := c.v1.Version(ctx, &v1.VersionRequest{Version: "v1beta1"})
			return err
		}, nil
	case "v2enc":
		return func(ctx context.Context, i int) error {
			r, err := c.v2.Encrypt(ctx, &v2.EncryptRequest{Plaintext: plains[i%len(plains)], Uid: "bench-" + strconv.Itoa(i)})
			if err == nil {
				c.noteKeyID(r.KeyId)
			}
			return err
		}, nil
	case "v1enc":
		return func(ctx context.Context, i int) error {
			_, err := c.v1.Encrypt(ctx, &v1.EncryptRequest{Version: "v1beta1", Plain: plains[i%len(plains)]})
			return err
		}, nil
	case "v2dec", "v1dec":
		cp, err := c.loadCorpus(o)
		if err != nil {
			return nil, err
		}
		c.corpus = cp
		items := cp.Items
		if o.method == "v2dec" {
			return func(ctx context.Context, i int) error {
				it := &items[i%len(items)]
				_, err := c.v2.Decrypt(ctx, &v2.DecryptRequest{Ciphertext: it.Ciphertext, KeyId: it.KeyID,
					Annotations: it.Annotations, Uid: "bench-" + strconv.Itoa(i)})
				return err
			}, nil
		}
		return func(ctx context.Context, i int) error {
			_, err := c.v1.Decrypt(ctx, &v1.DecryptRequest{Version: "v1beta1", Cipher: items[i%len(items)].Ciphertext})
			return err
		}, nil
	}
	return nil, fmt.Errorf("unknown method %q", o.method)
}

// loadCorpus reads the saved ciphertexts, or has the server make o.distinct
// fresh ones (16 in flight) and saves them for later runs.
func (c *caller) loadCorpus(o options) (*corpus, error) {
	if o.ctFile != "" {
		if raw, err := os.ReadFile(o.ctFile); err == nil {
			var cp corpus
			if err := json.Unmarshal(raw, &cp); err != nil {
				return nil, err
			}
			if cp.Method == o.method && len(cp.Items) >= o.distinct {
				cp.Items = cp.Items[:o.distinct]
				return &cp, nil
			}
		}
	}
	cp := &corpus{Method: o.method, Items: make([]corpusItem, o.distinct), created: true}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= o.distinct {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
				var err error
				if o.method == "v2dec" {
					var r *v2.EncryptResponse
					r, err = c.v2.Encrypt(ctx, &v2.EncryptRequest{Plaintext: dek(o.size), Uid: "corpus"})
					if err == nil {
						cp.Items[i] = corpusItem{Ciphertext: r.Ciphertext, KeyID: r.KeyId, Annotations: r.Annotations}
					}
				} else {
					var r *v1.EncryptResponse
					r, err = c.v1.Encrypt(ctx, &v1.EncryptRequest{Version: "v1beta1", Plain: dek(o.size)})
					if err == nil {
						cp.Items[i] = corpusItem{Ciphertext: r.Cipher}
					}
				}
				cancel()
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return nil, fmt.Errorf("building the decrypt corpus: %w", err)
	default:
	}
	if o.ctFile != "" {
		raw, _ := json.Marshal(cp)
		if err := os.WriteFile(o.ctFile, raw, 0o600); err != nil {
			return nil, err
		}
	}
	return cp, nil
}

type worker struct {
	lat []uint32
}

func measure(o options, c *caller, call func(context.Context, int) error) result {
	late := false
	if o.startAt > 0 {
		wait := time.Until(time.Unix(0, o.startAt))
		if wait > 0 {
			time.Sleep(wait)
		} else {
			late = true
		}
	}
	begin := time.Now()
	fixed := o.calls > 0
	warmEnd := begin.Add(o.warmup)
	end := warmEnd.Add(o.duration)
	if fixed {
		warmEnd = begin
		end = begin.Add(24 * time.Hour)
	}
	var (
		errCount atomic.Int64
		firstErr atomic.Value
		next     atomic.Int64
		wg       sync.WaitGroup
		startCPU cpuMark
		once     sync.Once
	)
	mark := func() { startCPU = readCPU(o.serverPID) }
	if fixed {
		mark()
		once.Do(func() {})
	}
	workers := make([]*worker, o.inflight)
	for w := range workers {
		workers[w] = &worker{lat: make([]uint32, 0, 1<<14)}
		wg.Add(1)
		go func(wk *worker) {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if fixed && i >= o.calls {
					return
				}
				t0 := time.Now()
				if !fixed && !t0.Before(end) {
					return
				}
				inWindow := !t0.Before(warmEnd)
				if inWindow {
					once.Do(mark)
				}
				ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
				err := call(ctx, i)
				cancel()
				d := time.Since(t0)
				if err != nil {
					errCount.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				if inWindow {
					ns := d.Nanoseconds()
					if ns > 0xFFFFFFFF {
						ns = 0xFFFFFFFF
					}
					wk.lat = append(wk.lat, uint32(ns))
				}
			}
		}(workers[w])
	}
	wg.Wait()
	once.Do(mark)
	stop := readCPU(o.serverPID)
	window := o.duration.Seconds()
	if fixed {
		window = stop.wall.Sub(begin).Seconds()
	}
	var all []uint32
	for _, wk := range workers {
		all = append(all, wk.lat...)
	}
	res := summarize(all, window)
	res.Method, res.Inflight, res.Errors, res.Late, res.Distinct = o.method, o.inflight, errCount.Load(), late, o.distinct
	if fe, ok := firstErr.Load().(string); ok {
		res.FirstError = fe
	}
	res.ClientCPUs = stop.self - startCPU.self
	res.WindowStartUnixNano = warmEnd.UnixNano()
	if o.serverPID > 0 && startCPU.server >= 0 && stop.server >= 0 {
		s := stop.server - startCPU.server
		res.ServerCPUs = &s
		res.ServerRSSKiB = rssKiB(o.serverPID)
	}
	if len(c.seen) > 0 {
		res.KeyIDFirstSeen = c.seen
	}
	if o.rawFile != "" {
		buf := make([]byte, 4*len(all))
		for i, v := range all {
			binary.LittleEndian.PutUint32(buf[4*i:], v)
		}
		_ = os.WriteFile(o.rawFile, buf, 0o600)
	}
	return res
}

func summarize(lat []uint32, window float64) result {
	r := result{Calls: len(lat), WindowS: window}
	if len(lat) == 0 {
		return r
	}
	sorted := append([]uint32(nil), lat...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	q := func(p float64) float64 {
		idx := int(p * float64(len(sorted)-1))
		return float64(sorted[idx]) / 1000
	}
	var sum float64
	for _, v := range sorted {
		sum += float64(v)
	}
	r.P50us, r.P90us, r.P99us, r.P999us = q(0.5), q(0.9), q(0.99), q(0.999)
	r.MaxUs = float64(sorted[len(sorted)-1]) / 1000
	r.MeanUs = sum / float64(len(sorted)) / 1000
	r.CallsPerS = float64(len(sorted)) / window
	return r
}

type cpuMark struct {
	wall   time.Time
	self   float64
	server float64
}

func readCPU(pid int) cpuMark {
	m := cpuMark{wall: time.Now(), server: -1}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		m.self = tv(ru.Utime) + tv(ru.Stime)
	}
	if pid > 0 {
		m.server = procCPU(pid)
	}
	return m
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// procCPU is utime+stime of every thread of pid, in seconds (USER_HZ = 100).
func procCPU(pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// After "pid (comm) ", field 3 (state) is index 0; utime is field 14, stime 15.
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	return (ut + st) / 100
}

func rssKiB(pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return 0
}
