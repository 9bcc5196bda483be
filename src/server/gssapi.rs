//! The GSSAPI (Kerberos V5) SASL mechanism, server side (RFC 4752), on the system's MIT
//! Kerberos library through `libgssapi` (feature `kerberos`).
//!
//! Owns: the acceptor credential from the JAAS section's keytab (`keyTab`, `principal`),
//! and one security context per connection. Must not: run on the async runtime's threads
//! without `block_in_place` (the library reads the keytab and may take a while).
//!
//! Exchange, after the client's first token (a Kerberos AP-REQ):
//!
//! ```text
//! client: AP-REQ                 server: AP-REP (context established)
//! client: (empty)                server: wrap([0x01, 0x01, 0x00, 0x00]): layer "none",
//!                                        max buffer 65536
//! client: wrap([layer, maxbuf(3), authzid...])
//!                                server: (null token; complete: the client is the
//!                                        context's source name, e.g. zkcli@EXAMPLE.COM)
//! ```
//!
//! A context that completes without an output token goes straight to the layer offer.

use crate::sasl::jaas::LoginModule;
use libgssapi::context::{SecurityContext, ServerCtx};
use libgssapi::credential::Cred;
use std::ffi::CString;

/// "No security layer", the only one offered (as ZooKeeper's default qop `auth`).
const LAYER_NONE: u8 = 0x01;

/// The server's Kerberos identity.
pub struct Acceptor {
    keytab: String,
    principal: String,
}

impl Acceptor {
    /// From a JAAS `Krb5LoginModule` entry: `keyTab` (and `useKeyTab=true`) and `principal`.
    /// The keytab is tried once here, so that a bad one stops the start.
    pub fn from_jaas(m: &LoginModule) -> Result<Acceptor, String> {
        let keytab =
            m.options.get("keyTab").cloned().ok_or(
                "Krb5LoginModule needs keyTab (zabd reads no ticket cache for the server)",
            )?;
        let principal = m.options.get("principal").cloned().unwrap_or_default();
        let a = Acceptor { keytab, principal };
        a.credential()?;
        tracing::info!(keytab = %a.keytab, principal = %a.principal, "Kerberos acceptor ready");
        Ok(a)
    }

    /// Acceptor credentials for the keys in the keytab (gss_acquire_cred_from with a
    /// `keytab` credential store: no process-wide KRB5_KTNAME).
    fn credential(&self) -> Result<Cred, String> {
        use libgssapi_sys::*;
        let key = CString::new("keytab").expect("no NUL");
        let value = CString::new(self.keytab.as_str()).map_err(|_| "keyTab has a NUL byte")?;
        let mut element = gss_key_value_element_desc {
            key: key.as_ptr(),
            value: value.as_ptr(),
        };
        let store = gss_key_value_set_desc {
            count: 1,
            elements: &mut element,
        };
        let mut minor: OM_uint32 = 0;
        let mut cred: gss_cred_id_t = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; the credential handle it fills is
        // owned by the `Cred` made from it, which releases it.
        let major = unsafe {
            gss_acquire_cred_from(
                &mut minor,
                std::ptr::null_mut(),
                _GSS_C_INDEFINITE,
                std::ptr::null_mut(),
                GSS_C_ACCEPT as gss_cred_usage_t,
                &store,
                &mut cred,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if major != GSS_S_COMPLETE {
            return Err(format!(
                "cannot use keyTab {}: GSSAPI error (major 0x{major:x}, minor {minor})",
                self.keytab
            ));
        }
        // SAFETY: `cred` was just acquired and is handed over to the `Cred`.
        Ok(unsafe { Cred::from_c(cred) })
    }

    pub fn exchange(&self) -> Exchange {
        Exchange {
            ctx: self.credential().map(|c| ServerCtx::new(Some(c))),
            stage: Stage::Context,
        }
    }
}

enum Stage {
    Context,
    /// The context is established and its last token sent; the client answers it with an
    /// empty token.
    ApRepSent,
    LayerOffered,
    Done,
}

/// One connection's exchange.
pub struct Exchange {
    ctx: Result<ServerCtx, String>,
    stage: Stage,
}

impl Exchange {
    /// One token in: the token to send back (None: a null token) and, once complete, the
    /// authenticated principal.
    pub fn step(&mut self, token: &[u8]) -> Result<(Option<Vec<u8>>, Option<String>), String> {
        let ctx = self.ctx.as_mut().map_err(|e| e.clone())?;
        let gss = |e: libgssapi::error::Error| format!("GSSAPI: {e}");
        match self.stage {
            Stage::Context => {
                let out = ctx.step(token, None).map_err(gss)?;
                if !ctx.is_complete() {
                    return Ok((out.map(|b| b.to_vec()), None));
                }
                match out {
                    Some(t) if !t.is_empty() => {
                        self.stage = Stage::ApRepSent;
                        Ok((Some(t.to_vec()), None))
                    }
                    _ => self.offer_layer(),
                }
            }
            Stage::ApRepSent => self.offer_layer(),
            Stage::LayerOffered => {
                let plain = ctx.unwrap(token).map_err(gss)?;
                if plain.len() < 4 || plain[0] & LAYER_NONE == 0 {
                    return Err(
                        "GSSAPI: the client chose a security layer that was not offered".into(),
                    );
                }
                let who = ctx.source_name().map_err(gss)?.to_string();
                self.stage = Stage::Done;
                Ok((None, Some(who)))
            }
            Stage::Done => Err("GSSAPI: the exchange is already complete".into()),
        }
    }

    fn offer_layer(&mut self) -> Result<(Option<Vec<u8>>, Option<String>), String> {
        let ctx = self.ctx.as_mut().map_err(|e| e.clone())?;
        let offer = [LAYER_NONE, 0x01, 0x00, 0x00];
        let wrapped = ctx
            .wrap(false, &offer)
            .map_err(|e| format!("GSSAPI: {e}"))?;
        self.stage = Stage::LayerOffered;
        Ok((Some(wrapped.to_vec()), None))
    }
}
