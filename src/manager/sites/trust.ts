/**
 * Whether a certificate a caller presented comes from a site this cluster trusts (pure apart
 * from the certificate parsing). Another Tern cluster is trusted by its CA, added by an operator
 * who checked the CA's fingerprint (`tern site add`). The TLS handshake proved the caller holds
 * the certificate's key; this checks who signed it: one of the trusted sites' CAs, within its
 * validity, with the role it claims (OU). A certificate of this cluster's own CA is not a site's.
 */
import { X509Certificate } from 'node:crypto';

export interface TrustedSite {
  id: string;
  name: string;
  caPem: string;
}

export interface SitePeer {
  site: TrustedSite;
  /** The role the certificate states: `tern-manager` or `tern-host`. */
  role: string;
  name: string;
}

/** The site that issued `peer` (DER), or why none: a caller is only ever let in by a match. */
export function siteOfCertificate(
  peer: Buffer,
  sites: readonly TrustedSite[],
  now: Date,
): SitePeer | { refused: string } {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(peer);
  } catch {
    return { refused: 'the certificate presented cannot be read' };
  }
  if (now < new Date(cert.validFrom) || now > new Date(cert.validTo))
    return { refused: 'the certificate presented is not valid now' };
  for (const site of sites) {
    const ca = new X509Certificate(site.caPem);
    if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) continue;
    if (now < new Date(ca.validFrom) || now > new Date(ca.validTo))
      return { refused: `the CA of site ${site.name} is not valid now` };
    return { site, role: subjectField(cert.subject, 'OU'), name: subjectField(cert.subject, 'CN') };
  }
  return { refused: 'the certificate presented was issued by no site this cluster trusts' };
}

/** A field of an X.509 subject as Node prints it (`CN=a\nOU=b`). */
function subjectField(subject: string, key: string): string {
  for (const line of subject.split('\n')) if (line.startsWith(`${key}=`)) return line.slice(key.length + 1);
  return '';
}
