// The system OpenSSL 3 headers, plus shims for the macros Swift cannot call.
#ifndef C_OPENSSL_H
#define C_OPENSSL_H

#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <openssl/evp.h>

long COpenSSL_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version);
long COpenSSL_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version);
long COpenSSL_SSL_CTX_add1_chain_cert(SSL_CTX *ctx, X509 *cert);
long COpenSSL_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode);
long COpenSSL_SSL_set_tlsext_host_name(SSL *ssl, const char *name);
long COpenSSL_BIO_get_mem_data(BIO *bio, char **data);
size_t COpenSSL_BIO_ctrl_pending(BIO *bio);
long COpenSSL_BIO_set_mem_eof_return(BIO *bio, int value);
int COpenSSL_sk_GENERAL_NAME_num(const GENERAL_NAMES *names);
const GENERAL_NAME *COpenSSL_sk_GENERAL_NAME_value(const GENERAL_NAMES *names, int index);
void COpenSSL_GENERAL_NAMES_free(GENERAL_NAMES *names);
int COpenSSL_sk_X509_num(const STACK_OF(X509) *certs);
X509 *COpenSSL_sk_X509_value(const STACK_OF(X509) *certs, int index);
int COpenSSL_SSL_CTX_get_ex_new_index(void);
int COpenSSL_SSL_get_ex_new_index(void);
/// The URI of a GENERAL_NAME when it is a URI SAN, else NULL.
const unsigned char *COpenSSL_GENERAL_NAME_uri(const GENERAL_NAME *name, int *length);
/// notBefore / notAfter of a certificate as Unix seconds (0 when unreadable).
long long COpenSSL_X509_not_before(const X509 *cert);
long long COpenSSL_X509_not_after(const X509 *cert);
/// No renegotiation, no compression, TLS 1.3 suites AES-128-GCM first by the server's choice (ChaCha20
/// for a client preferring it); 1 when OpenSSL took the suites (option bits are macros Swift cannot import).
int COpenSSL_SSL_CTX_set_mesh_options(SSL_CTX *ctx);
/// Server side: `callback` runs on each ClientHello that carries SNI (it may switch the SSL_CTX).
long COpenSSL_SSL_CTX_set_tlsext_servername_callback(SSL_CTX *ctx, int (*callback)(SSL *, int *, void *));
/// The host name the client sent in SNI, or NULL.
const char *COpenSSL_SSL_get_servername(const SSL *ssl);
unsigned long COpenSSL_ERR_GET_LIB(unsigned long code);
unsigned long COpenSSL_ERR_GET_REASON(unsigned long code);
/// A fresh EC P-256 key pair (`EVP_PKEY_Q_keygen` is variadic), or NULL.
EVP_PKEY *COpenSSL_EVP_PKEY_generate_P256(void);
/// Adds an extension request carrying one URI subject alternative name to a CSR: 1, or 0 on failure.
int COpenSSL_X509_REQ_add_uri_san(X509_REQ *request, const char *uri);

#endif
