// Command kube-apiserver runs a real Kubernetes API server for Portico's tests: an embedded etcd,
// the upstream kube-apiserver in-process, and (optionally) kube-controller-manager's EndpointSlice
// and namespace controllers. It writes a kubeconfig, prints one line
//
//	READY <kubeconfig path> <server url>
//
// to stdout and runs until SIGTERM or SIGINT. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

const (
	serviceCIDR    = "10.96.0.0/16"
	serviceIP      = "10.96.0.1" // the "kubernetes" Service, first address of serviceCIDR
	saIssuer       = "https://kubernetes.default.svc.cluster.local"
	contextName    = "portico-test"
	shutdownBudget = 60 * time.Second
)

type options struct {
	kubeconfig       string
	dataDir          string
	securePort       int
	controlAddr      string
	endpointSlices   bool
	namespaces       bool
	nodeName         string
	hostIP           string
	etcdFsync        bool
	etcdLogLevel     string
	startTimeout     time.Duration
	exitOnStdinClose bool
	apiserverArgs    []string
}

func parseOptions() options {
	var o options
	fs := flag.NewFlagSet("kube-apiserver", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s [flags] [-- extra kube-apiserver flags]\n", os.Args[0])
		fs.PrintDefaults()
	}
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "where to write the admin kubeconfig (default <data dir>/kubeconfig); ca.crt, admin.crt, admin.key, admin.token, host-ip and control-url are written beside it")
	fs.StringVar(&o.dataDir, "data-dir", "", "keep etcd data, credentials and ports here and reuse them on the next start (default: a temporary directory, deleted on exit)")
	fs.IntVar(&o.securePort, "secure-port", 0, "API server port on 127.0.0.1 (default: a free port, remembered in --data-dir)")
	fs.StringVar(&o.controlAddr, "control-addr", "127.0.0.1:0", "address of the control endpoint (POST /etcd/stop, POST /etcd/start, GET /etcd)")
	fs.BoolVar(&o.endpointSlices, "endpointslice-controller", true, "run kube-controller-manager's EndpointSlice controller")
	fs.BoolVar(&o.namespaces, "namespace-controller", true, "run kube-controller-manager's namespace controller (finishes namespace deletion)")
	fs.StringVar(&o.nodeName, "node", "portico-node", "create a Ready Node with this name (its InternalIP is the host IP); empty for none")
	fs.StringVar(&o.hostIP, "host-ip", "", "non-loopback IPv4 address of this machine that tests may use as a Pod IP (default: the first one found)")
	fs.StringVar(&o.etcdLogLevel, "etcd-log-level", "fatal", "etcd log level (debug, info, warn, error, fatal); at error, every etcd stop logs harmless \"server closed\" errors")
	fs.BoolVar(&o.etcdFsync, "etcd-fsync", false, "let etcd fsync its writes (off: test data is disposable and writes are faster)")
	fs.DurationVar(&o.startTimeout, "start-timeout", 2*time.Minute, "give up when the API server is not ready after this long")
	fs.BoolVar(&o.exitOnStdinClose, "exit-on-stdin-close", false, "shut down when stdin reaches end of file (the parent process died)")
	_ = fs.Parse(os.Args[1:])
	o.apiserverArgs = fs.Args()
	return o
}

// logger writes the harness's own messages to stderr. (klog takes over the standard logger.)
var logger = log.New(os.Stderr, "portico kube-apiserver: ", log.Ltime|log.Lmicroseconds)

func main() {
	if err := run(parseOptions()); err != nil {
		logger.Printf("error: %v", err)
		os.Exit(1)
	}
}

func run(o options) error {
	started := time.Now()

	// NewAPIServerCommand installs the process's SIGTERM/SIGINT handler (it may be installed only
	// once); the API server shuts down gracefully on the first signal. We listen too, to stop the
	// rest afterwards.
	cmd := app.NewAPIServerCommand()
	shutdown := make(chan string, 4)
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2)

	dataDir := o.dataDir
	if dataDir == "" {
		tmp, err := os.MkdirTemp("", "portico-kube-apiserver-")
		if err != nil {
			return err
		}
		dataDir = tmp
		defer func() {
			if err := os.RemoveAll(tmp); err != nil {
				logger.Printf("removing %s: %v", tmp, err)
			}
		}()
	} else if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	kubeconfigPath := o.kubeconfig
	if kubeconfigPath == "" {
		kubeconfigPath = filepath.Join(dataDir, "kubeconfig")
	}
	if kubeconfigPath, err = filepath.Abs(kubeconfigPath); err != nil {
		return err
	}

	var hostIP net.IP
	if o.hostIP != "" {
		if hostIP = net.ParseIP(o.hostIP).To4(); hostIP == nil {
			return fmt.Errorf("--host-ip %q is not an IPv4 address", o.hostIP)
		}
	} else if hostIP = hostIPv4(); hostIP == nil {
		logger.Printf("no non-loopback IPv4 address found: EndpointSlices cannot point at local backends")
	}
	var hostIPs []net.IP
	if hostIP != nil {
		hostIPs = append(hostIPs, hostIP)
	}

	creds := newPKI(dataDir)
	if err := creds.ensure(hostIPs); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	p, err := loadOrChoosePorts(dataDir, o.securePort)
	if err != nil {
		return err
	}
	serverURL := fmt.Sprintf("https://127.0.0.1:%d", p.APIServer)

	etcd := &etcdServer{dir: filepath.Join(dataDir, "etcd"), clientPort: p.EtcdClient, peerPort: p.EtcdPeer, fsync: o.etcdFsync, logLevel: o.etcdLogLevel}
	if err := etcd.start(); err != nil {
		return err
	}
	defer etcd.stop()
	logger.Printf("etcd serving on %s (%s)", etcd.clientURL(), time.Since(started).Round(time.Millisecond))

	go func() {
		for sig := range signals {
			switch sig {
			case syscall.SIGUSR1:
				logger.Printf("SIGUSR1: stopping etcd")
				etcd.stop()
				logger.Printf("etcd stopped")
			case syscall.SIGUSR2:
				logger.Printf("SIGUSR2: starting etcd")
				if err := etcd.start(); err != nil {
					logger.Printf("%v", err)
				} else {
					logger.Printf("etcd started")
				}
			default:
				shutdown <- sig.String()
			}
		}
	}()
	if o.exitOnStdinClose {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			shutdown <- "stdin closed"
		}()
	}

	advertise := "127.0.0.1"
	if hostIP != nil {
		advertise = hostIP.String()
	}
	args := []string{
		"--etcd-servers=" + etcd.clientURL(),
		"--bind-address=127.0.0.1",
		"--advertise-address=" + advertise,
		fmt.Sprintf("--secure-port=%d", p.APIServer),
		"--cert-dir=" + creds.dir,
		"--tls-cert-file=" + creds.servingCert,
		"--tls-private-key-file=" + creds.servingKey,
		"--client-ca-file=" + creds.caCert,
		"--token-auth-file=" + creds.tokenAuthFile,
		"--service-account-issuer=" + saIssuer,
		"--service-account-key-file=" + creds.saPub,
		"--service-account-signing-key-file=" + creds.saKey,
		"--service-cluster-ip-range=" + serviceCIDR,
		"--authorization-mode=RBAC",
		// No controller-manager creates default ServiceAccounts, so Pods must not require one.
		"--disable-admission-plugins=ServiceAccount",
		// Nothing would keep the "kubernetes" Service's endpoints up to date anyway.
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
	}
	args = append(args, o.apiserverArgs...)
	cmd.SetArgs(args)
	apiserverDone := make(chan error, 1)
	go func() { apiserverDone <- cmd.Execute() }()

	// stopAPIServer asks the API server to shut down (unless a signal already did) and waits.
	apiserverRunning := true
	stopAPIServer := func(reason string) {
		if !apiserverRunning {
			return
		}
		if reason != syscall.SIGTERM.String() && reason != syscall.SIGINT.String() {
			genericapiserver.RequestShutdown()
		}
		select {
		case err := <-apiserverDone:
			if err != nil {
				logger.Printf("kube-apiserver: %v", err)
			}
		case <-time.After(shutdownBudget):
			logger.Printf("kube-apiserver did not stop within %s", shutdownBudget)
		}
		apiserverRunning = false
	}

	restConfig := &rest.Config{
		Host: serverURL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   creds.caPEM,
			CertData: creds.adminCertPEM,
			KeyData:  creds.adminKeyPEM,
		},
		UserAgent: "portico-test-harness",
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return err
	}

	// Wait for /readyz.
	deadline := time.After(o.startTimeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for ready := false; !ready; {
		select {
		case err := <-apiserverDone:
			apiserverRunning = false
			if err == nil {
				err = errors.New("exited")
			}
			return fmt.Errorf("kube-apiserver: %w", err)
		case reason := <-shutdown:
			logger.Printf("%s before ready: shutting down", reason)
			stopAPIServer(reason)
			return nil
		case <-deadline:
			stopAPIServer("start timeout")
			return fmt.Errorf("kube-apiserver not ready after %s", o.startTimeout)
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
			cancel()
			ready = err == nil && strings.TrimSpace(string(body)) == "ok"
		}
	}
	logger.Printf("kube-apiserver ready on %s (%s)", serverURL, time.Since(started).Round(time.Millisecond))

	controllersCtx, stopControllers := context.WithCancel(context.Background())
	defer stopControllers()
	setupCtx, cancelSetup := context.WithTimeout(controllersCtx, o.startTimeout)
	defer cancelSetup()
	if o.nodeName != "" {
		if err := createNode(setupCtx, client, o.nodeName, hostIP); err != nil {
			stopAPIServer("setup failed")
			return fmt.Errorf("creating node %s: %w", o.nodeName, err)
		}
	}
	if err := startControllers(controllersCtx, restConfig, o.endpointSlices, o.namespaces); err != nil {
		stopAPIServer("setup failed")
		return fmt.Errorf("controllers: %w", err)
	}

	controlURL, closeControl, err := serveControl(o.controlAddr, etcd)
	if err != nil {
		stopAPIServer("setup failed")
		return err
	}
	defer closeControl()

	if err := writeClientFiles(kubeconfigPath, serverURL, creds, hostIP, controlURL); err != nil {
		stopAPIServer("setup failed")
		return err
	}
	logger.Printf("ready in %s: kubeconfig %s, control %s", time.Since(started).Round(time.Millisecond), kubeconfigPath, controlURL)
	fmt.Printf("READY %s %s\n", kubeconfigPath, serverURL)

	select {
	case reason := <-shutdown:
		logger.Printf("%s: shutting down", reason)
		stopControllers()
		stopAPIServer(reason)
	case err := <-apiserverDone:
		apiserverRunning = false
		stopControllers()
		return fmt.Errorf("kube-apiserver exited: %v", err)
	}
	stopControllers()
	return nil
}

// writeClientFiles writes the admin kubeconfig and, beside it, the CA, the admin certificate, key
// and token, the host IP and the control URL.
func writeClientFiles(kubeconfigPath, serverURL string, creds *pki, hostIP net.IP, controlURL string) error {
	dir := filepath.Dir(kubeconfigPath)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := map[string][]byte{
		"ca.crt":      creds.caPEM,
		"admin.crt":   creds.adminCertPEM,
		"admin.key":   creds.adminKeyPEM,
		"admin.token": []byte(creds.adminTokenValue),
		"control-url": []byte(controlURL + "\n"),
	}
	if hostIP != nil {
		files["host-ip"] = []byte(hostIP.String() + "\n")
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}

	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[contextName] = &clientcmdapi.Cluster{Server: serverURL, CertificateAuthorityData: creds.caPEM}
	cfg.AuthInfos[adminUser] = &clientcmdapi.AuthInfo{Token: creds.adminTokenValue}
	cfg.AuthInfos[adminUser+"-cert"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: creds.adminCertPEM,
		ClientKeyData:         creds.adminKeyPEM,
	}
	cfg.Contexts[contextName] = &clientcmdapi.Context{Cluster: contextName, AuthInfo: adminUser, Namespace: "default"}
	cfg.Contexts[contextName+"-cert"] = &clientcmdapi.Context{Cluster: contextName, AuthInfo: adminUser + "-cert", Namespace: "default"}
	cfg.CurrentContext = contextName
	return clientcmd.WriteToFile(*cfg, kubeconfigPath)
}

// serveControl serves the loopback control endpoint and returns its URL.
func serveControl(addr string, etcd *etcdServer) (string, func(), error) {
	mux := http.NewServeMux()
	status := func(w http.ResponseWriter) {
		if etcd.isRunning() {
			fmt.Fprintln(w, "running")
		} else {
			fmt.Fprintln(w, "stopped")
		}
	}
	mux.HandleFunc("GET /etcd", func(w http.ResponseWriter, _ *http.Request) { status(w) })
	mux.HandleFunc("POST /etcd/stop", func(w http.ResponseWriter, _ *http.Request) {
		logger.Printf("control: stopping etcd")
		etcd.stop()
		logger.Printf("etcd stopped")
		status(w)
	})
	mux.HandleFunc("POST /etcd/start", func(w http.ResponseWriter, _ *http.Request) {
		logger.Printf("control: starting etcd")
		if err := etcd.start(); err != nil {
			logger.Printf("%v", err)
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		logger.Printf("etcd started")
		status(w)
	})
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("control endpoint: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Printf("control endpoint: %v", err)
		}
	}()
	return "http://" + l.Addr().String(), func() { _ = srv.Close() }, nil
}
