// The system's OpenSSL libcrypto (Debian's libssl-dev): only its EVP message digests are used.
#include <openssl/evp.h>
