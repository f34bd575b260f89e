# File mail that postwarden tagged as spam into the Junk mailbox (created if missing).
#
# postwarden-milter sets "X-Spam-Flag: YES" when a regex spam rule matches (the rule's name is
# in X-Postwarden-Spam). It removes any X-Spam-Flag a sender wrote itself before judging, so
# this header is postwarden's verdict. Install as a global sieve_before script in Dovecot:
#   plugin { sieve_before = /etc/dovecot/sieve/postwarden-spam.sieve }
# and compile it once with: sievec /etc/dovecot/sieve/postwarden-spam.sieve
require ["fileinto", "mailbox"];

if header :is "X-Spam-Flag" "YES" {
    fileinto :create "Junk";
    stop;
}
