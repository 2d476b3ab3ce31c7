#include "tls.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <sys/stat.h>

#include <cctype>
#include <fstream>
#include <vector>

namespace vss::vssd {
namespace {

// Messages up to this size are sent corked (see TlsSession::Send).
constexpr size_t kCorkMaxBytes = 64u << 10;

gnutls_psk_server_credentials_t Psk(void* p) {
  return static_cast<gnutls_psk_server_credentials_t>(p);
}
gnutls_certificate_credentials_t Cert(void* p) {
  return static_cast<gnutls_certificate_credentials_t>(p);
}
gnutls_session_t Session(void* p) { return static_cast<gnutls_session_t>(p); }

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// Checks that `path` is a psktool key file: readable, one or more lines of
// "username:hexkey" (an even number of hex digits), and nothing else.
Status CheckPskFile(const std::string& path) {
  std::ifstream f(path);
  if (!f) return NotFoundError("--tls-psk " + path + ": cannot be read");
  std::string line;
  int number = 0, keys = 0;
  while (std::getline(f, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    size_t colon = line.find(':');
    std::string key = colon == std::string::npos ? "" : line.substr(colon + 1);
    bool hex = !key.empty() && key.size() % 2 == 0;
    for (char c : key) hex = hex && std::isxdigit(static_cast<unsigned char>(c));
    if (colon == 0 || !hex) {
      return InvalidArgumentError("--tls-psk " + path + ": line " +
                                  std::to_string(number) +
                                  " is not username:hexkey (psktool's format)");
    }
    ++keys;
  }
  if (keys == 0) {
    return InvalidArgumentError("--tls-psk " + path +
                                ": no key in it (make one with psktool -u NAME -p " +
                                path + ")");
  }
  return OkStatus();
}

ssize_t Pull(gnutls_transport_ptr_t p, void* buf, size_t n) {
  ssize_t got = static_cast<TlsTransport*>(p)->Recv(buf, n);
  if (got < 0 && errno == 0) errno = EIO;
  return got;
}

ssize_t PushVec(gnutls_transport_ptr_t p, const giovec_t* iov, int count) {
  // giovec_t has the layout of struct iovec.
  return static_cast<TlsTransport*>(p)->Send(reinterpret_cast<const iovec*>(iov),
                                             count);
}

}  // namespace

StatusOr<std::unique_ptr<TlsCredentials>> TlsCredentials::Load(
    const TlsOptions& options) {
  std::unique_ptr<TlsCredentials> c(new TlsCredentials);
  if (!options.psk_file.empty()) {
    VSS_RETURN_IF_ERROR(CheckPskFile(options.psk_file));
    gnutls_psk_server_credentials_t psk;
    if (gnutls_psk_allocate_server_credentials(&psk) < 0) {
      return InternalError("gnutls: cannot allocate PSK credentials");
    }
    c->psk_ = psk;
    int rc = gnutls_psk_set_server_credentials_file(psk, options.psk_file.c_str());
    if (rc < 0) {
      return InvalidArgumentError("--tls-psk " + options.psk_file + ": " +
                                  gnutls_strerror(rc));
    }
  }
  if (!options.x509_dir.empty()) {
    const std::string& dir = options.x509_dir;
    std::string cert = dir + "/server-cert.pem", key = dir + "/server-key.pem";
    std::string ca = dir + "/ca-cert.pem", crl = dir + "/ca-crl.pem";
    for (const std::string& f : {cert, key}) {
      if (!Exists(f)) return NotFoundError("--tls-x509 " + dir + ": " + f + " is missing");
    }
    gnutls_certificate_credentials_t cred;
    if (gnutls_certificate_allocate_credentials(&cred) < 0) {
      return InternalError("gnutls: cannot allocate certificate credentials");
    }
    c->cert_ = cred;
    int rc = gnutls_certificate_set_x509_key_file(cred, cert.c_str(), key.c_str(),
                                                  GNUTLS_X509_FMT_PEM);
    if (rc < 0) {
      return InvalidArgumentError("--tls-x509 " + dir + ": " + cert + " / " + key +
                                  ": " + gnutls_strerror(rc));
    }
    if (Exists(ca)) {
      rc = gnutls_certificate_set_x509_trust_file(cred, ca.c_str(), GNUTLS_X509_FMT_PEM);
      if (rc <= 0) {
        return InvalidArgumentError("--tls-x509 " + dir + ": " + ca + ": " +
                                    (rc < 0 ? gnutls_strerror(rc) : "no certificate in it"));
      }
      if (Exists(crl)) {
        rc = gnutls_certificate_set_x509_crl_file(cred, crl.c_str(), GNUTLS_X509_FMT_PEM);
        if (rc < 0) {
          return InvalidArgumentError("--tls-x509 " + dir + ": " + crl + ": " +
                                      gnutls_strerror(rc));
        }
      }
      c->verify_clients_ = true;
    }
  }
  return c;
}

TlsCredentials::~TlsCredentials() {
  if (psk_) gnutls_psk_free_server_credentials(Psk(psk_));
  if (cert_) gnutls_certificate_free_credentials(Cert(cert_));
}

StatusOr<std::unique_ptr<TlsSession>> TlsSession::Handshake(
    const TlsCredentials& credentials, TlsTransport* transport) {
  std::unique_ptr<TlsSession> t(new TlsSession);
  gnutls_session_t s;
  if (gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NO_SIGNAL) < 0) {
    return InternalError("gnutls: cannot make a session");
  }
  t->session_ = s;
  const char* err = nullptr;
  int rc = credentials.psk_
               ? gnutls_set_default_priority_append(s, "+ECDHE-PSK:+DHE-PSK:+PSK",
                                                    &err, 0)
               : gnutls_set_default_priority(s);
  if (rc < 0) return InternalError(std::string("gnutls priority: ") + gnutls_strerror(rc));
  if (credentials.psk_) {
    gnutls_credentials_set(s, GNUTLS_CRD_PSK, Psk(credentials.psk_));
  }
  if (credentials.cert_) {
    gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, Cert(credentials.cert_));
    if (credentials.verify_clients_) {
      // A client without a certificate, or with one that does not verify
      // against ca-cert.pem, fails the handshake.
      gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
      gnutls_session_set_verify_cert(s, nullptr, 0);
    }
  }
  gnutls_transport_set_ptr(s, transport);
  gnutls_transport_set_pull_function(s, Pull);
  gnutls_transport_set_vec_push_function(s, PushVec);
  do {
    rc = gnutls_handshake(s);
  } while (rc < 0 && !gnutls_error_is_fatal(rc));
  if (rc < 0) return IoError(std::string("TLS handshake: ") + gnutls_strerror(rc));

  // A PSK handshake (TLS 1.3 reports the certificate type for the key
  // exchange with PSK, so the PSK identity is what tells).
  const char* user = credentials.psk_ ? gnutls_psk_server_get_username(s) : nullptr;
  if (user != nullptr) {
    t->authenticated_ = true;
    t->peer_ = std::string("psk user ") + user;
    return t;
  }
  switch (gnutls_auth_get_type(s)) {
    case GNUTLS_CRD_CERTIFICATE: {
      unsigned count = 0;
      const gnutls_datum_t* chain = gnutls_certificate_get_peers(s, &count);
      // With a CA the handshake verified the chain; without one nothing
      // was asked for and the client is anonymous.
      t->authenticated_ = credentials.verify_clients_ && chain && count > 0;
      if (t->authenticated_) {
        gnutls_x509_crt_t crt;
        if (gnutls_x509_crt_init(&crt) >= 0) {
          if (gnutls_x509_crt_import(crt, &chain[0], GNUTLS_X509_FMT_DER) >= 0) {
            gnutls_datum_t dn{};
            if (gnutls_x509_crt_get_dn3(crt, &dn, 0) >= 0) {
              t->peer_ = "certificate " +
                         std::string(reinterpret_cast<char*>(dn.data), dn.size);
              gnutls_free(dn.data);
            }
          }
          gnutls_x509_crt_deinit(crt);
        }
      }
      break;
    }
    default:
      break;
  }
  return t;
}

TlsSession::~TlsSession() {
  if (session_) gnutls_deinit(Session(session_));
}

ssize_t TlsSession::Recv(void* buf, size_t n) {
  for (;;) {
    ssize_t rc = gnutls_record_recv(Session(session_), buf, n);
    if (rc >= 0) return rc;
    if (rc == GNUTLS_E_INTERRUPTED || rc == GNUTLS_E_AGAIN) continue;
    if (rc == GNUTLS_E_PREMATURE_TERMINATION) return 0;  // no close notify
    return -1;
  }
}

bool TlsSession::Send(std::span<const uint8_t> head, std::span<const uint8_t> data) {
  gnutls_session_t s = Session(session_);
  // A small message goes out corked, in as few records as it fits; a large
  // one is sent as it is (corking would copy it into GnuTLS's buffer).
  if (head.size() + data.size() > kCorkMaxBytes) {
    for (std::span<const uint8_t> part : {head, data}) {
      while (!part.empty()) {
        ssize_t rc = gnutls_record_send(s, part.data(), part.size());
        if (rc == GNUTLS_E_INTERRUPTED || rc == GNUTLS_E_AGAIN) continue;
        if (rc < 0) return false;
        part = part.subspan(static_cast<size_t>(rc));
      }
    }
    return true;
  }
  gnutls_record_cork(s);
  for (std::span<const uint8_t> part : {head, data}) {
    while (!part.empty()) {
      ssize_t rc = gnutls_record_send(s, part.data(), part.size());
      if (rc == GNUTLS_E_INTERRUPTED || rc == GNUTLS_E_AGAIN) continue;
      if (rc < 0) {
        gnutls_record_uncork(s, 0);
        return false;
      }
      part = part.subspan(static_cast<size_t>(rc));
    }
  }
  for (;;) {
    int rc = gnutls_record_uncork(s, GNUTLS_RECORD_WAIT);
    if (rc >= 0) return true;
    if (rc != GNUTLS_E_INTERRUPTED && rc != GNUTLS_E_AGAIN) return false;
  }
}

void TlsSession::Close() { gnutls_bye(Session(session_), GNUTLS_SHUT_WR); }

}  // namespace vss::vssd
