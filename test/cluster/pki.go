package cluster

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// keyPair is a certificate and its key, PEM-encoded.
type keyPair struct {
	cert *x509.Certificate
	key  *rsa.PrivateKey
}

func newCA(cn string) (*keyPair, error) {
	return newCert(cn, nil, true, nil, nil)
}

// newCert issues a certificate signed by ca (self-signed when ca is nil).
func newCert(cn string, ca *keyPair, isCA bool, hosts []string, usage []x509.ExtKeyUsage) (*keyPair, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           usage,
		IsCA:                  isCA,
		BasicConstraintsValid: true,
	}
	if isCA {
		tpl.KeyUsage |= x509.KeyUsageCertSign
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tpl.IPAddresses = append(tpl.IPAddresses, ip)
		} else {
			tpl.DNSNames = append(tpl.DNSNames, h)
		}
	}
	parent, signer := tpl, key
	if ca != nil {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &keyPair{cert: cert, key: key}, nil
}

func (k *keyPair) certPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.cert.Raw})
}

func (k *keyPair) keyPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.key)})
}

// write stores the pair as dir/name.crt and dir/name.key.
func (k *keyPair) write(dir, name string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err = os.WriteFile(certFile, k.certPEM(), 0o600); err != nil {
		return
	}
	err = os.WriteFile(keyFile, k.keyPEM(), 0o600)
	return
}

func writeServiceAccountKeys(dir string) (pub, priv string, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", "", err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", "", err
	}
	pub, priv = filepath.Join(dir, "sa.pub"), filepath.Join(dir, "sa.key")
	if err = os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o600); err != nil {
		return
	}
	err = os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	return
}

// ServingCert returns a self-signed TLS certificate for local servers.
func ServingCert(hosts ...string) (tls.Certificate, error) {
	kp, err := newCert("localhost", nil, false, hosts, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth})
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(kp.certPEM(), kp.keyPEM())
}

// IssueCA writes a new CA and a certificate it signed for hosts (usable as server and
// client) into dir, as name-ca.crt, name.crt and name.key.
func IssueCA(dir, name string, hosts ...string) (caFile, certFile, keyFile string, err error) {
	ca, err := newCA(name + "-ca")
	if err != nil {
		return
	}
	if caFile, _, err = ca.write(dir, name+"-ca"); err != nil {
		return
	}
	kp, err := newCert(name, ca, false, hosts, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth})
	if err != nil {
		return
	}
	certFile, keyFile, err = kp.write(dir, name)
	return
}
