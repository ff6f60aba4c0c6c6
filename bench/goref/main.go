// Command goref is the benchmark's Go reference plugin: the upstream
// k8s.io/kms pkg/service gRPC server (what a Go KMS plugin is built from)
// over an in-memory AES-256-GCM backend doing the same work as the
// appliance's local backend. It shows what a Go peer costs per call, so the
// suite can report the appliance's ratio to it. Never for production: the
// key lives in memory and dies with the process.
package main

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/kms/pkg/service"
)

const keyID = "goref/v1"

type memBackend struct{ aead cipher.AEAD }

func newMemBackend() (*memBackend, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &memBackend{aead: aead}, nil
}

func (m *memBackend) Encrypt(_ context.Context, _ string, data []byte) (*service.EncryptResponse, error) {
	nonce := make([]byte, m.aead.NonceSize(), m.aead.NonceSize()+len(data)+m.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return &service.EncryptResponse{Ciphertext: m.aead.Seal(nonce, nonce, data, []byte(keyID)), KeyID: keyID}, nil
}

func (m *memBackend) Decrypt(_ context.Context, _ string, req *service.DecryptRequest) ([]byte, error) {
	n := m.aead.NonceSize()
	if req.KeyID != keyID || len(req.Ciphertext) < n+m.aead.Overhead() {
		return nil, errors.New("not our ciphertext")
	}
	return m.aead.Open(nil, req.Ciphertext[:n], req.Ciphertext[n:], []byte(keyID))
}

func (m *memBackend) Status(context.Context) (*service.StatusResponse, error) {
	return &service.StatusResponse{Version: "v2", Healthz: "ok", KeyID: keyID}, nil
}

func main() {
	socket := flag.String("socket", "", "UNIX socket to listen on")
	flag.Parse()
	if *socket == "" {
		fmt.Fprintln(os.Stderr, "goref: -socket is required")
		os.Exit(2)
	}
	backend, err := newMemBackend()
	if err != nil {
		fmt.Fprintln(os.Stderr, "goref:", err)
		os.Exit(1)
	}
	_ = os.Remove(*socket)
	svc := service.NewGRPCService(*socket, 30*time.Second, backend)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		svc.Shutdown()
	}()
	if err := svc.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "goref:", err)
		os.Exit(1)
	}
	_ = os.Remove(*socket)
}
