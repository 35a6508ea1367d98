#!/usr/bin/env bash
# Regenerates the TLS test fixtures in this directory: two unrelated CAs, a server
# certificate and a client certificate signed by the first, and a client certificate signed
# by the second (the "untrusted" caller). Committed so tests need neither openssl nor a
# certificate-generating crate; valid for 100 years, so they do not expire under the tests.
#
# Test material only: the private keys are public. Never mount these anywhere real.
#
#   bash crates/testkit/tls/generate.sh
set -euo pipefail
cd "$(dirname "$0")"
DAYS=36500
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() { # name subject
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -sha256 -days "$DAYS" -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -out "$1.pem"
}

leaf() { # name ca subject extended-key-usage subject-alt-names
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$3" -out "$tmp/$1.csr"
  cat > "$tmp/$1.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=$4
subjectAltName=$5
EXT
  openssl x509 -req -in "$tmp/$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial \
    -sha256 -days "$DAYS" -extfile "$tmp/$1.ext" -out "$1.pem" 2>/dev/null
}

ca ca "fairchance test CA"
ca other-ca "some other CA"
leaf server ca "fairchance test server" serverAuth \
  "DNS:localhost,IP:127.0.0.1,DNS:fairchance-intake,DNS:fairchance-activation,DNS:fairchance-followup,DNS:fairchance-proof,DNS:fairchance-feedback"
leaf client ca "fairchance test client" clientAuth "DNS:fairchance-client"
leaf other-client other-ca "untrusted client" clientAuth "DNS:untrusted-client"
rm -f ./*.srl ca.key other-ca.key
echo "regenerated: $(ls ./*.pem ./*.key | tr '\n' ' ')"
