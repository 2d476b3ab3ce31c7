// TLS for vssd's NBD server, with GnuTLS: the credentials, loaded once at
// start from the files qemu-nbd and nbdkit accept, and the server session of
// one connection that asked for TLS with NBD_OPT_STARTTLS.
//
//   PSK      a file in psktool's format, one "username:hexkey" per line
//            (`psktool -u NAME -p FILE`); the file is read again at each
//            handshake, so keys can be added without a restart.
//   X.509    a directory as qemu's tls-creds-x509 uses it: server-cert.pem
//            and server-key.pem, and ca-cert.pem (with ca-crl.pem if
//            present) to require and verify client certificates.
//
// A client is *authenticated* when it proved a PSK key, or presented a
// client certificate that verified against ca-cert.pem. A directory without
// ca-cert.pem gives encryption only: its clients are not authenticated.
//
// Thread safety: TlsCredentials is read-only once loaded and shared by every
// session. One TlsSession may be used by two threads at once, one receiving
// and one sending (GnuTLS's rule); never by two senders.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <memory>
#include <span>
#include <string>

#include "vss/base/status.h"

namespace vss::vssd {

struct TlsOptions {
  std::string psk_file;  // empty: no PSK
  std::string x509_dir;  // empty: no certificates
  bool empty() const { return psk_file.empty() && x509_dir.empty(); }
};

class TlsCredentials {
 public:
  // Loads the credentials `options` names. kInvalidArgument or kNotFound
  // with a one-line message naming the file that is missing or malformed.
  // REQUIRES: !options.empty().
  static StatusOr<std::unique_ptr<TlsCredentials>> Load(const TlsOptions& options);
  ~TlsCredentials();
  TlsCredentials(const TlsCredentials&) = delete;
  TlsCredentials& operator=(const TlsCredentials&) = delete;

  // True when some client can authenticate: a PSK file, or certificates
  // with a CA to verify clients against. False for a certificate directory
  // without ca-cert.pem (encryption only, every client anonymous).
  bool CanAuthenticate() const { return psk_ != nullptr || verify_clients_; }

 private:
  friend class TlsSession;
  TlsCredentials() = default;
  void* psk_ = nullptr;   // gnutls_psk_server_credentials_t
  void* cert_ = nullptr;  // gnutls_certificate_credentials_t
  bool verify_clients_ = false;
};

// The raw socket I/O a session runs over (the connection's, with its
// timeouts): Recv returns >0 bytes, 0 at end of stream, -1 with errno set;
// Send sends some of the vector and returns how much, or -1 with errno.
class TlsTransport {
 public:
  virtual ~TlsTransport() = default;
  virtual ssize_t Recv(void* buf, size_t n) = 0;
  virtual ssize_t Send(const iovec* iov, int count) = 0;
};

class TlsSession {
 public:
  // Runs the server side of a TLS handshake over `transport` (which must
  // outlive the session). A failed handshake (including a client
  // certificate that does not verify) returns kIoError with GnuTLS's
  // reason, for the log.
  static StatusOr<std::unique_ptr<TlsSession>> Handshake(
      const TlsCredentials& credentials, TlsTransport* transport);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // See the top of the file.
  bool authenticated() const { return authenticated_; }
  // Who the client said it is: "psk user NAME" or "certificate DN", or
  // "anonymous".
  const std::string& peer() const { return peer_; }

  // Reads up to n decrypted bytes: >0 bytes, 0 at end of stream, -1 on an
  // error (including a timeout of the transport).
  ssize_t Recv(void* buf, size_t n);
  // Sends `head` then `data` whole; false on an error.
  bool Send(std::span<const uint8_t> head, std::span<const uint8_t> data);
  // Sends the TLS close notification (best effort, no wait for the peer's).
  // REQUIRES: no other thread uses the session.
  void Close();

 private:
  TlsSession() = default;
  void* session_ = nullptr;  // gnutls_session_t
  bool authenticated_ = false;
  std::string peer_ = "anonymous";
};

}  // namespace vss::vssd
