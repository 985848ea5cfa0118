#define _GNU_SOURCE
#include <time.h>
#include "COpenSSL.h"

long COpenSSL_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) { return SSL_CTX_set_min_proto_version(ctx, version); }
long COpenSSL_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version) { return SSL_CTX_set_max_proto_version(ctx, version); }
long COpenSSL_SSL_CTX_add1_chain_cert(SSL_CTX *ctx, X509 *cert) { return SSL_CTX_add1_chain_cert(ctx, cert); }
long COpenSSL_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_session_cache_mode(ctx, mode); }
long COpenSSL_SSL_set_tlsext_host_name(SSL *ssl, const char *name) { return SSL_set_tlsext_host_name(ssl, name); }
long COpenSSL_BIO_get_mem_data(BIO *bio, char **data) { return BIO_get_mem_data(bio, data); }
size_t COpenSSL_BIO_ctrl_pending(BIO *bio) { return BIO_ctrl_pending(bio); }
long COpenSSL_BIO_set_mem_eof_return(BIO *bio, int value) { return BIO_set_mem_eof_return(bio, value); }
int COpenSSL_sk_GENERAL_NAME_num(const GENERAL_NAMES *names) { return sk_GENERAL_NAME_num(names); }
const GENERAL_NAME *COpenSSL_sk_GENERAL_NAME_value(const GENERAL_NAMES *names, int index) { return sk_GENERAL_NAME_value(names, index); }
void COpenSSL_GENERAL_NAMES_free(GENERAL_NAMES *names) { GENERAL_NAMES_free(names); }
int COpenSSL_sk_X509_num(const STACK_OF(X509) *certs) { return sk_X509_num(certs); }
X509 *COpenSSL_sk_X509_value(const STACK_OF(X509) *certs, int index) { return sk_X509_value(certs, index); }
int COpenSSL_SSL_CTX_get_ex_new_index(void) { return SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL); }
int COpenSSL_SSL_get_ex_new_index(void) { return SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL); }

const unsigned char *COpenSSL_GENERAL_NAME_uri(const GENERAL_NAME *name, int *length) {
    if (name == NULL || name->type != GEN_URI) return NULL;
    *length = ASN1_STRING_length(name->d.uniformResourceIdentifier);
    return ASN1_STRING_get0_data(name->d.uniformResourceIdentifier);
}

static long long asn1_time_to_unix(const ASN1_TIME *t) {
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
    return (long long)timegm(&tm);
}

long long COpenSSL_X509_not_before(const X509 *cert) { return asn1_time_to_unix(X509_get0_notBefore(cert)); }
long long COpenSSL_X509_not_after(const X509 *cert) { return asn1_time_to_unix(X509_get0_notAfter(cert)); }
unsigned long COpenSSL_ERR_GET_LIB(unsigned long code) { return (unsigned long)ERR_GET_LIB(code); }
unsigned long COpenSSL_ERR_GET_REASON(unsigned long code) { return (unsigned long)ERR_GET_REASON(code); }
// No renegotiation (TLS 1.2), no compression. TLS 1.3 suites: OpenSSL's default set, AES-128-GCM
// first and chosen by the server (AES-256's 14 rounds buy nothing here; OpenSSL's default order
// and a client's usual one put AES-256 first), except that a client preferring ChaCha20 (no AES
// in hardware) gets ChaCha20, as BoringSSL's equal-preference group does.
int COpenSSL_SSL_CTX_set_mesh_options(SSL_CTX *ctx) {
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA);
    return SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
}

long COpenSSL_SSL_CTX_set_tlsext_servername_callback(SSL_CTX *ctx, int (*callback)(SSL *, int *, void *)) {
    return SSL_CTX_set_tlsext_servername_callback(ctx, callback);
}

const char *COpenSSL_SSL_get_servername(const SSL *ssl) { return SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name); }

// A dynamic sidecar's own key, CSR and state-file checksum (TLS/TLSCertificateRequest.swift,
// TLS/TLSDigest.swift): through the OpenSSL the sidecar links anyway, not swift-crypto/X509.

EVP_PKEY *COpenSSL_EVP_PKEY_generate_P256(void) { return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"); }

int COpenSSL_X509_REQ_add_uri_san(X509_REQ *request, const char *uri) {
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    GENERAL_NAME *name = GENERAL_NAME_new();
    ASN1_IA5STRING *value = ASN1_IA5STRING_new();
    STACK_OF(X509_EXTENSION) *extensions = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *san = NULL;
    int ok = names != NULL && name != NULL && value != NULL && extensions != NULL && ASN1_STRING_set(value, uri, -1) == 1;
    if (ok) {
        GENERAL_NAME_set0_value(name, GEN_URI, value);
        value = NULL;
        ok = sk_GENERAL_NAME_push(names, name) > 0;
        if (ok) name = NULL;
    }
    if (ok) san = X509V3_EXT_i2d(NID_subject_alt_name, 0, names);
    ok = ok && san != NULL && sk_X509_EXTENSION_push(extensions, san) > 0;
    if (ok) san = NULL;
    ok = ok && X509_REQ_add_extensions(request, extensions) == 1;
    X509_EXTENSION_free(san);
    sk_X509_EXTENSION_pop_free(extensions, X509_EXTENSION_free);
    ASN1_IA5STRING_free(value);
    GENERAL_NAME_free(name);
    GENERAL_NAMES_free(names);
    return ok;
}
