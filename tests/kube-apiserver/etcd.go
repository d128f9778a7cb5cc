package main

import (
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// etcdServer is the embedded etcd. It can be stopped and started again on the same ports and
// data directory while the API server keeps running, which is how tests simulate an etcd outage.
type etcdServer struct {
	dir        string
	clientPort int
	peerPort   int
	fsync      bool
	logLevel   string

	mu      sync.Mutex
	running *embed.Etcd
}

func (s *etcdServer) clientURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d", s.clientPort)
}

func (s *etcdServer) config() *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = "portico"
	cfg.Dir = s.dir
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", s.clientPort)}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", s.peerPort)}
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = fmt.Sprintf("%s=%s", cfg.Name, peer.String())
	cfg.Logger = "zap"
	cfg.LogOutputs = []string{embed.StdErrLogOutput}
	cfg.LogLevel = s.logLevel
	// Test data is thrown away: skipping fsync makes writes (and the 10,000-object benchmark)
	// much faster.
	cfg.UnsafeNoFsync = !s.fsync
	cfg.EnableGRPCGateway = false
	// A single member has nobody to disagree with: short raft timeouts make it elect itself (and
	// so start) in milliseconds instead of about a second.
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	return cfg
}

// start starts etcd and waits until it serves; a no-op when it is already running.
func (s *etcdServer) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running != nil {
		return nil
	}
	e, err := embed.StartEtcd(s.config())
	if err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("etcd failed while starting: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return errors.New("etcd did not become ready within 60s")
	}
	s.running = e
	go func() {
		if err, ok := <-e.Err(); ok && err != nil {
			logger.Printf("etcd: %v", err)
		}
	}()
	return nil
}

// stop stops etcd; a no-op when it is already stopped.
func (s *etcdServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running == nil {
		return
	}
	s.running.Close()
	s.running = nil
}

func (s *etcdServer) isRunning() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running != nil
}
