package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Identity of the administrator: a client certificate in system:masters and a static token for
// the same user.
const (
	adminUser  = "portico-admin"
	adminGroup = "system:masters"
)

// pki holds the paths of every credential the harness generates. Everything lives in
// <data dir>/pki, so a restart with the same --data-dir keeps the CA, the serving certificate,
// the admin credentials and the service-account key (kubeconfigs and tokens stay valid).
type pki struct {
	dir                 string
	caCert, caKey       string
	servingCert         string
	servingKey          string
	adminCert, adminKey string
	adminToken          string
	tokenAuthFile       string
	saKey, saPub        string
	caPEM               []byte
	adminCertPEM        []byte
	adminKeyPEM         []byte
	adminTokenValue     string
}

func newPKI(dataDir string) *pki {
	dir := filepath.Join(dataDir, "pki")
	return &pki{
		dir:           dir,
		caCert:        filepath.Join(dir, "ca.crt"),
		caKey:         filepath.Join(dir, "ca.key"),
		servingCert:   filepath.Join(dir, "apiserver.crt"),
		servingKey:    filepath.Join(dir, "apiserver.key"),
		adminCert:     filepath.Join(dir, "admin.crt"),
		adminKey:      filepath.Join(dir, "admin.key"),
		adminToken:    filepath.Join(dir, "admin.token"),
		tokenAuthFile: filepath.Join(dir, "tokens.csv"),
		saKey:         filepath.Join(dir, "sa.key"),
		saPub:         filepath.Join(dir, "sa.pub"),
	}
}

// ensure generates the credentials unless a previous run with the same data directory already did.
func (p *pki) ensure(hostIPs []net.IP) error {
	if _, err := os.Stat(p.saPub); errors.Is(err, os.ErrNotExist) {
		if err := p.generate(hostIPs); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	var err error
	if p.caPEM, err = os.ReadFile(p.caCert); err != nil {
		return err
	}
	if p.adminCertPEM, err = os.ReadFile(p.adminCert); err != nil {
		return err
	}
	if p.adminKeyPEM, err = os.ReadFile(p.adminKey); err != nil {
		return err
	}
	token, err := os.ReadFile(p.adminToken)
	if err != nil {
		return err
	}
	p.adminTokenValue = string(token)
	return nil
}

func (p *pki) generate(hostIPs []net.IP) error {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return err
	}
	now := time.Now().Add(-time.Hour)
	validity := 10 * 365 * 24 * time.Hour

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "portico-test-ca"},
		NotBefore:             now,
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, caKey.Public(), caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	if err := writeCert(p.caCert, caDER); err != nil {
		return err
	}
	if err := writeKey(p.caKey, caKey); err != nil {
		return err
	}

	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP(serviceIP)}
	ips = append(ips, hostIPs...)
	serving := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now,
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{
			"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local",
		},
		IPAddresses: ips,
	}
	if err := issue(p.servingCert, p.servingKey, serving, ca, caKey); err != nil {
		return err
	}

	admin := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: adminUser, Organization: []string{adminGroup}},
		NotBefore:    now,
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if err := issue(p.adminCert, p.adminKey, admin, ca, caKey); err != nil {
		return err
	}

	tokenBytes := make([]byte, 32)
	if _, err := rand.Read(tokenBytes); err != nil {
		return err
	}
	token := hex.EncodeToString(tokenBytes)
	if err := os.WriteFile(p.adminToken, []byte(token), 0o600); err != nil {
		return err
	}
	// token,user,uid,"group1,group2"
	line := fmt.Sprintf("%s,%s,%s,\"%s\"\n", token, adminUser, adminUser, adminGroup)
	if err := os.WriteFile(p.tokenAuthFile, []byte(line), 0o600); err != nil {
		return err
	}

	// Service-account tokens (TokenRequest) are signed with this key and verified with its public half.
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	if err := writeKey(p.saKey, saKey); err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return err
	}
	// Written last: its presence marks a complete set.
	return writePEM(p.saPub, "PUBLIC KEY", pubDER, 0o644)
}

func issue(certPath, keyPath string, template, ca *x509.Certificate, caKey crypto.Signer) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca, key.Public(), caKey)
	if err != nil {
		return err
	}
	if err := writeCert(certPath, der); err != nil {
		return err
	}
	return writeKey(keyPath, key)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err)
	}
	return n
}

func writeCert(path string, der []byte) error {
	return writePEM(path, "CERTIFICATE", der, 0o644)
}

// writeKey writes a PKCS#8 private key, which every TLS stack the tests use can read.
func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

func writePEM(path, blockType string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), mode)
}

// ports are chosen once per data directory and reused on restart, so that a kubeconfig written by
// an earlier run keeps working and etcd finds its member at the same peer URL.
type ports struct {
	APIServer  int `json:"apiserver"`
	EtcdClient int `json:"etcdClient"`
	EtcdPeer   int `json:"etcdPeer"`
}

func loadOrChoosePorts(dataDir string, securePort int) (ports, error) {
	path := filepath.Join(dataDir, "ports.json")
	var p ports
	if data, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(data, &p); err != nil {
			return p, fmt.Errorf("%s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return p, err
	}
	if securePort != 0 {
		p.APIServer = securePort
	}
	for _, port := range []*int{&p.APIServer, &p.EtcdClient, &p.EtcdPeer} {
		if *port == 0 {
			free, err := freePort()
			if err != nil {
				return p, err
			}
			*port = free
		}
	}
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return p, err
	}
	return p, os.WriteFile(path, data, 0o644)
}

// freePort asks the kernel for an unused loopback port. Another process could take it before we
// bind it; the kernel hands out ephemeral ports in sequence, so that is rare.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// hostIPv4 returns a non-loopback IPv4 address of this machine, or nil. EndpointSlice validation
// rejects loopback (127.0.0.0/8, ::1) and link-local addresses, so tests that want the real
// EndpointSlice controller to publish a local backend use this address as the Pod IP.
func hostIPv4() net.IP {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil
	}
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || iface.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := iface.Addrs()
		if err != nil {
			continue
		}
		for _, addr := range addrs {
			ipnet, ok := addr.(*net.IPNet)
			if !ok {
				continue
			}
			ip := ipnet.IP.To4()
			if ip != nil && ip.IsGlobalUnicast() {
				return ip
			}
		}
	}
	return nil
}
