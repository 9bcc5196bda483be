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
        let usage = libgssapi_sys::GSS_C_ACCEPT;
        acquire(std::ptr::null_mut(), usage, &[("keytab", &self.keytab)]).map_err(
            |(major, minor)| {
                format!(
                    "cannot use keyTab {}: GSSAPI error (major 0x{major:x}, minor {minor})",
                    self.keytab
                )
            },
        )
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
                let authzid = String::from_utf8_lossy(&plain[4..]).to_string();
                if !authzid.is_empty() && authzid != who {
                    return Err(format!(
                        "GSSAPI: {who} asked to act as {authzid}, which is not allowed"
                    ));
                }
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

/// A member's Kerberos identity when it authenticates to another (quorum SASL, the JAAS
/// `QuorumLearner` section's `keyTab` and `principal`).
pub struct Initiator {
    keytab: String,
    principal: String,
}

impl Initiator {
    pub fn from_jaas(m: &LoginModule) -> Result<Initiator, String> {
        let get = |k: &str| {
            m.options
                .get(k)
                .cloned()
                .ok_or_else(|| format!("Krb5LoginModule needs {k} for a member's own login"))
        };
        let i = Initiator {
            keytab: get("keyTab")?,
            principal: get("principal")?,
        };
        i.credential()?;
        Ok(i)
    }

    /// The principal this member authenticates as (also its SASL authorization id).
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// Initiator credentials for `principal` from the keytab (a `client_keytab` store).
    fn credential(&self) -> Result<Cred, String> {
        use libgssapi_sys::*;
        let who = CString::new(self.principal.as_str()).map_err(|_| "principal has a NUL byte")?;
        let mut minor: OM_uint32 = 0;
        let mut name: gss_name_t = std::ptr::null_mut();
        let mut buf = gss_buffer_desc {
            length: self.principal.len(),
            value: who.as_ptr() as *mut std::ffi::c_void,
        };
        // SAFETY: the buffer points at `who`, alive for the call; the name it fills is
        // released below.
        let major = unsafe { gss_import_name(&mut minor, &mut buf, GSS_C_NT_USER_NAME, &mut name) };
        if major != GSS_S_COMPLETE {
            return Err(format!("cannot parse principal {}", self.principal));
        }
        // Tickets go to an in-memory cache of this member's own, never the process's
        // default cache (which may hold another principal's).
        let cache = format!("MEMORY:zabd-quorum-{}", std::process::id());
        let store = [
            ("client_keytab", self.keytab.as_str()),
            ("ccache", cache.as_str()),
        ];
        let cred = acquire(name, GSS_C_INITIATE, &store);
        // SAFETY: `name` was imported above and is not used after this.
        unsafe { gss_release_name(&mut minor, &mut name) };
        cred.map_err(|(major, minor)| {
            format!(
                "cannot log in as {} with keyTab {}: GSSAPI error (major 0x{major:x}, minor {minor})",
                self.principal, self.keytab
            )
        })
    }

    /// A context towards `target` (a principal such as `zkquorum/host@REALM`).
    pub fn start(&self, target: &str) -> Result<InitExchange, String> {
        use libgssapi::context::{ClientCtx, CtxFlags};
        use libgssapi::name::Name;
        use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_KRB5_PRINCIPAL};
        let name = Name::new(target.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL))
            .map_err(|e| format!("GSSAPI: target {target}: {e}"))?;
        let ctx = ClientCtx::new(
            Some(self.credential()?),
            name,
            CtxFlags::GSS_C_MUTUAL_FLAG,
            Some(GSS_MECH_KRB5),
        );
        Ok(InitExchange {
            ctx,
            authzid: self.principal.clone(),
            done: false,
        })
    }
}

/// gss_acquire_cred_from: credentials for `name` (or any, when null) from a credential
/// store of `(key, value)` pairs; the (major, minor) status when it fails.
fn acquire(
    name: libgssapi_sys::gss_name_t,
    usage: u32,
    store: &[(&str, &str)],
) -> Result<Cred, (u32, u32)> {
    use libgssapi_sys::*;
    let texts: Vec<(CString, CString)> = store
        .iter()
        .map(|(k, v)| {
            (
                CString::new(*k).unwrap_or_default(),
                CString::new(*v).unwrap_or_default(),
            )
        })
        .collect();
    let mut elements: Vec<gss_key_value_element_desc> = texts
        .iter()
        .map(|(k, v)| gss_key_value_element_desc {
            key: k.as_ptr(),
            value: v.as_ptr(),
        })
        .collect();
    let set = gss_key_value_set_desc {
        count: elements.len() as OM_uint32,
        elements: elements.as_mut_ptr(),
    };
    let mut minor: OM_uint32 = 0;
    let mut cred: gss_cred_id_t = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call (`texts` and `elements` outlive it); the
    // credential handle it fills is owned by the `Cred` made from it, which releases it.
    let major = unsafe {
        gss_acquire_cred_from(
            &mut minor,
            name,
            _GSS_C_INDEFINITE,
            std::ptr::null_mut(),
            usage as gss_cred_usage_t,
            &set,
            &mut cred,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if major != GSS_S_COMPLETE {
        return Err((major, minor));
    }
    // SAFETY: `cred` was just acquired and is handed over to the `Cred`.
    Ok(unsafe { Cred::from_c(cred) })
}

/// One outgoing exchange (RFC 4752, client side).
pub struct InitExchange {
    ctx: libgssapi::context::ClientCtx,
    authzid: String,
    done: bool,
}

impl InitExchange {
    pub fn is_complete(&self) -> bool {
        self.done
    }

    /// The next token to send: the first (None in), then each answer to a challenge.
    pub fn step(&mut self, challenge: Option<&[u8]>) -> Result<Vec<u8>, String> {
        let gss = |e: libgssapi::error::Error| format!("GSSAPI: {e}");
        if !self.ctx.is_complete() {
            let out = self.ctx.step(challenge, None).map_err(gss)?;
            return Ok(out.map(|b| b.to_vec()).unwrap_or_default());
        }
        // The server's wrapped offer: choose no security layer, name ourselves.
        let offer = self
            .ctx
            .unwrap(challenge.unwrap_or_default())
            .map_err(gss)?;
        if offer.len() < 4 || offer[0] & LAYER_NONE == 0 {
            return Err("GSSAPI: the server offers no 'no security layer' option".into());
        }
        let mut answer = vec![LAYER_NONE, 0x01, 0x00, 0x00];
        answer.extend_from_slice(self.authzid.as_bytes());
        let wrapped = self.ctx.wrap(false, &answer).map_err(gss)?;
        self.done = true;
        Ok(wrapped.to_vec())
    }
}
