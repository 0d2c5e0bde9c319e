package tlsfiles

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ca is a throwaway certificate authority.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T) *ca {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &ca{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns PEM cert and key for 127.0.0.1 with serial.
func (c *ca) issue(t *testing.T, serial int64, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
}

// replace writes data to path by rename, as cert-manager and certbot do.
func replace(t *testing.T, path string, data []byte) {
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// serve accepts TLS connections with s until the test ends, completing
// each handshake.
func serve(t *testing.T, s *Server) string {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", s.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				if c.(*tls.Conn).Handshake() == nil {
					c.Write([]byte{1}) // proof the server accepted the handshake
				}
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// servedSerial dials addr trusting root and returns the server
// certificate's serial number.
func servedSerial(addr string, cfg *tls.Config) (int64, error) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
}

func TestReloadOnChange(t *testing.T) {
	root := newCA(t)
	dir := t.TempDir()
	certFile, keyFile, caFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	c, k := root.issue(t, 100, x509.ExtKeyUsageServerAuth)
	replace(t, certFile, c)
	replace(t, keyFile, k)
	replace(t, caFile, root.pem)
	s, err := NewServer(Config{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s)
	client, err := ClientConfig(caFile)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := servedSerial(addr, client); err != nil || got != 100 {
		t.Fatalf("first certificate: serial %d, %v", got, err)
	}

	// New files: the next connection sees them, no restart.
	c, k = root.issue(t, 200, x509.ExtKeyUsageServerAuth)
	replace(t, certFile, c)
	replace(t, keyFile, k)
	if got, err := servedSerial(addr, client); err != nil || got != 200 {
		t.Fatalf("after replacing the files: serial %d, %v", got, err)
	}

	// A certificate without its key (half-way through a replacement) does
	// not load: the previous one stays, and comes back working.
	c, _ = root.issue(t, 300, x509.ExtKeyUsageServerAuth)
	replace(t, certFile, c)
	if got, err := servedSerial(addr, client); err != nil || got != 200 {
		t.Fatalf("with a mismatched pair: serial %d, %v; want the previous 200", got, err)
	}
	replace(t, certFile, []byte("garbage"))
	if got, err := servedSerial(addr, client); err != nil || got != 200 {
		t.Fatalf("with garbage: serial %d, %v; want the previous 200", got, err)
	}
	if err := s.Reload(); !errors.Is(err, ErrTLS) {
		t.Fatalf("Reload of garbage = %v", err)
	}
	c, k = root.issue(t, 400, x509.ExtKeyUsageServerAuth)
	replace(t, certFile, c)
	replace(t, keyFile, k)
	if got, err := servedSerial(addr, client); err != nil || got != 400 {
		t.Fatalf("after a good replacement: serial %d, %v", got, err)
	}
	if s.Leaf().SerialNumber.Int64() != 400 {
		t.Fatalf("Leaf = %v", s.Leaf().SerialNumber)
	}
}

func TestReloadOnDemandWhenStatCannotTell(t *testing.T) {
	root := newCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	c, k := root.issue(t, 1, x509.ExtKeyUsageServerAuth)
	os.WriteFile(certFile, c, 0o600)
	os.WriteFile(keyFile, k, 0o600)
	s, err := NewServer(Config{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if s.Leaf().SerialNumber.Int64() != 1 {
		t.Fatal("wrong leaf")
	}
}

func TestMutualTLS(t *testing.T) {
	root, other := newCA(t), newCA(t)
	dir := t.TempDir()
	certFile, keyFile, caFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	c, k := root.issue(t, 1, x509.ExtKeyUsageServerAuth)
	os.WriteFile(certFile, c, 0o600)
	os.WriteFile(keyFile, k, 0o600)
	os.WriteFile(caFile, root.pem, 0o600)
	s, err := NewServer(Config{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s)
	base, _ := ClientConfig(caFile)

	dial := func(cfg *tls.Config) error {
		conn, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			return err
		}
		defer conn.Close()
		// TLS 1.3 reports a refused client certificate only on the first
		// read; the server writes a byte once it accepted the handshake.
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadFull(conn, make([]byte, 1))
		return err
	}
	if err := dial(base); err == nil {
		t.Fatal("a client without a certificate was accepted")
	}
	cc, ck := other.issue(t, 2, x509.ExtKeyUsageClientAuth)
	bad := base.Clone()
	pair, _ := tls.X509KeyPair(cc, ck)
	bad.Certificates = []tls.Certificate{pair}
	if err := dial(bad); err == nil {
		t.Fatal("a client certificate from another CA was accepted")
	}
	cc, ck = root.issue(t, 3, x509.ExtKeyUsageClientAuth)
	good := base.Clone()
	pair, _ = tls.X509KeyPair(cc, ck)
	good.Certificates = []tls.Certificate{pair}
	if err := dial(good); err != nil {
		t.Fatalf("a client certificate from the CA was refused: %v", err)
	}
}

func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewServer(Config{CertFile: filepath.Join(dir, "x"), KeyFile: filepath.Join(dir, "y")}); !errors.Is(err, ErrTLS) {
		t.Fatalf("missing files: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "ca"), []byte("not pem"), 0o600)
	if _, err := ClientConfig(filepath.Join(dir, "ca")); !errors.Is(err, ErrTLS) {
		t.Fatalf("bad CA: %v", err)
	}
}
