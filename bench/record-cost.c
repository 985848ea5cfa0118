// Instructions per 200-byte TLS 1.3 record (TLS_AES_128_GCM_SHA256, the size of a small request
// or response): OpenSSL's own record layer (SSL_write, SSL_read over memory BIOs, as our TLSHandler
// drives it) against protecting the record ourselves with one EVP context keyed once (the nonce
// per record, the 5-byte header as AAD, the inner content type, the tag): what a record layer of
// our own on OpenSSL 3's EVP would cost. Run by bench/record-cost.sh under callgrind.
#include <openssl/ssl.h>
#include <openssl/evp.h>
#include <openssl/err.h>
#include <openssl/ec.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <valgrind/callgrind.h>

static EVP_PKEY *key; static X509 *cert;
static void mint(void) {
    key = EVP_EC_gen("P-256");
    cert = X509_new(); X509_set_version(cert, 2); ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0); X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key); X509_NAME *n = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (unsigned char *)"x", -1, -1, 0);
    X509_set_issuer_name(cert, n); X509_sign(cert, key, EVP_sha256());
}
static void pump(SSL *from, BIO *fromOut, BIO *toIn) {
    char buf[65536]; int n; (void)from;
    while ((n = BIO_read(fromOut, buf, sizeof buf)) > 0) BIO_write(toIn, buf, n);
}
int main(int argc, char **argv) {
    int records = argc > 1 ? atoi(argv[1]) : 10000;
    unsigned char plain[200]; memset(plain, 'x', sizeof plain);
    mint();
    SSL_CTX *sctx = SSL_CTX_new(TLS_server_method()), *cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(sctx, TLS1_3_VERSION); SSL_CTX_set_min_proto_version(cctx, TLS1_3_VERSION);
    SSL_CTX_set_ciphersuites(sctx, "TLS_AES_128_GCM_SHA256"); SSL_CTX_set_ciphersuites(cctx, "TLS_AES_128_GCM_SHA256");
    SSL_CTX_use_certificate(sctx, cert); SSL_CTX_use_PrivateKey(sctx, key);
    SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
    BIO *sIn = BIO_new(BIO_s_mem()), *sOut = BIO_new(BIO_s_mem()), *cIn = BIO_new(BIO_s_mem()), *cOut = BIO_new(BIO_s_mem());
    SSL_set_bio(s, sIn, sOut); SSL_set_bio(c, cIn, cOut); SSL_set_accept_state(s); SSL_set_connect_state(c);
    for (int i = 0; i < 10; i++) { SSL_do_handshake(c); pump(c, cOut, sIn); SSL_do_handshake(s); pump(s, sOut, cIn); }
    if (!SSL_is_init_finished(s) || !SSL_is_init_finished(c)) { fprintf(stderr, "no handshake\n"); return 1; }
    char sink[65536];
    // 1: SSL_write of one record, the ciphertext drained
    CALLGRIND_START_INSTRUMENTATION;
    for (int i = 0; i < records; i++) { SSL_write(c, plain, sizeof plain); BIO_read(cOut, sink, sizeof sink); }
    CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS_AT("ssl_write");
    // 2: SSL_read of one record (the server's tickets are taken first; the records to read are
    // encrypted before the window)
    for (int i = 0; i < 3; i++) { SSL_read(c, sink, sizeof sink); }
    unsigned char *many = malloc((size_t)records * 300); int off = 0;
    for (int i = 0; i < records; i++) { SSL_write(s, plain, sizeof plain); off += BIO_read(sOut, many + off, 300); }
    int per = off / records;
    CALLGRIND_START_INSTRUMENTATION;
    int got = 0; for (int i = 0; i < records; i++) { BIO_write(cIn, many + i * per, per); got += SSL_read(c, sink, sizeof sink) == 200; }
    CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS_AT("ssl_read");
    // 3: our own seal with EVP, one context keyed once: nonce per record, AAD header, data, tag
    unsigned char k[16] = {1}, iv[12] = {2}, nonce[12], out[300], tag[16], hdr[5] = {23, 3, 3, 0, 217};
    unsigned char inner[201]; memcpy(inner, plain, 200); inner[200] = 23;
    EVP_CIPHER *gcm = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    EVP_EncryptInit_ex(ctx, gcm, NULL, k, NULL);
    CALLGRIND_START_INSTRUMENTATION;
    for (unsigned long long seq = 0; seq < (unsigned long long)records; seq++) {
        memcpy(nonce, iv, 12); for (int b = 0; b < 8; b++) nonce[11 - b] ^= (unsigned char)(seq >> (8 * b));
        int len = 0, fin = 0;
        EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce);
        EVP_EncryptUpdate(ctx, NULL, &len, hdr, 5);
        EVP_EncryptUpdate(ctx, out, &len, inner, sizeof inner);
        EVP_EncryptFinal_ex(ctx, out + len, &fin);
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag);
    }
    CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS_AT("evp_seal");
    // 4: our own open with EVP: nonce, AAD header, data, expected tag, final (tag check)
    EVP_CIPHER_CTX *dctx = EVP_CIPHER_CTX_new();
    EVP_DecryptInit_ex(dctx, gcm, NULL, k, NULL);
    unsigned char sealed[201], sealedTag[16];
    {   int len = 0, fin = 0; memcpy(nonce, iv, 12);
        EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce); EVP_EncryptUpdate(ctx, NULL, &len, hdr, 5);
        EVP_EncryptUpdate(ctx, sealed, &len, inner, sizeof inner); EVP_EncryptFinal_ex(ctx, sealed + len, &fin);
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, sealedTag); }
    int opened = 0;
    CALLGRIND_START_INSTRUMENTATION;
    for (int i = 0; i < records; i++) {
        int len = 0, fin = 0; memcpy(nonce, iv, 12);
        EVP_DecryptInit_ex(dctx, NULL, NULL, NULL, nonce);
        EVP_DecryptUpdate(dctx, NULL, &len, hdr, 5);
        EVP_DecryptUpdate(dctx, out, &len, sealed, sizeof sealed);
        EVP_CIPHER_CTX_ctrl(dctx, EVP_CTRL_AEAD_SET_TAG, 16, sealedTag);
        opened += EVP_DecryptFinal_ex(dctx, out + len, &fin) == 1;
    }
    CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS_AT("evp_open");
    if (opened != records) { fprintf(stderr, "open failed\n"); return 1; }
    printf("records %d, per read record %d bytes, read ok %d\n", records, per, got);
    return 0;
}
