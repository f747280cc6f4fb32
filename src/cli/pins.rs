//! `shopd pins CERT.pem [NEXT.pem …]`: the SPKI SHA-256 pins the app should carry — the certificate in use
//! first, then the backups — as an Android network security config and an iOS `NSPinnedDomains` snippet.

use std::path::PathBuf;

use clap::Args;

#[derive(Args)]
pub struct PinsArgs {
    /// PEM files: the certificate in use first, then backup certificates or public keys
    /// (`openssl pkey -in next.key -pubout`). The first certificate of a chain file is the one pinned.
    #[arg(required = true, value_name = "PEM")]
    files: Vec<PathBuf>,
    /// The domain the app connects to.
    #[arg(long, env = "SHOP_DOMAIN", default_value = "shop.example.com")]
    domain: String,
    /// The date (YYYY-MM-DD) after which Android stops enforcing the pins, so that an app never updated
    /// does not lock itself out; none by default.
    #[arg(long)]
    expiration: Option<chrono::NaiveDate>,
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn run(args: PinsArgs) -> Result<(), String> {
    let mut listed: Vec<(String, &PathBuf)> = Vec::new();
    for file in &args.files {
        let pem =
            std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let pin = crate::tls::pin_of_pem(&pem).map_err(|e| format!("{}: {e}", file.display()))?;
        if !listed.iter().any(|(p, _)| *p == pin) {
            listed.push((pin, file));
        }
    }
    let pins: Vec<&String> = listed.iter().map(|(pin, _)| pin).collect();
    if pins.len() < 2 {
        eprintln!(
            "shopd: warning: only one pin; add a backup key (NEXT.pem) so that the app survives a key change"
        );
    }
    let domain = xml_escape(&args.domain);
    println!("# SPKI SHA-256 pins (base64), the current one first");
    for (pin, file) in &listed {
        println!("{pin}  {}", file.display());
    }

    println!();
    println!("# Android: res/xml/network_security_config.xml");
    println!(r#"<?xml version="1.0" encoding="utf-8"?>"#);
    println!("<network-security-config>");
    println!(r#"    <domain-config cleartextTrafficPermitted="false">"#);
    println!(r#"        <domain includeSubdomains="false">{domain}</domain>"#);
    match args.expiration {
        Some(date) => println!(
            r#"        <pin-set expiration="{}">"#,
            date.format("%Y-%m-%d")
        ),
        None => println!("        <pin-set>"),
    }
    for pin in &pins {
        println!(r#"            <pin digest="SHA-256">{pin}</pin>"#);
    }
    println!("        </pin-set>");
    println!("    </domain-config>");
    println!("</network-security-config>");

    println!();
    println!("# iOS: Info.plist");
    println!("<key>NSAppTransportSecurity</key>");
    println!("<dict>");
    println!("    <key>NSPinnedDomains</key>");
    println!("    <dict>");
    println!("        <key>{domain}</key>");
    println!("        <dict>");
    println!("            <key>NSIncludesSubdomains</key>");
    println!("            <false/>");
    println!("            <key>NSPinnedLeafIdentities</key>");
    println!("            <array>");
    for pin in &pins {
        println!("                <dict>");
        println!("                    <key>SPKI-SHA256-BASE64</key>");
        println!("                    <string>{pin}</string>");
        println!("                </dict>");
    }
    println!("            </array>");
    println!("        </dict>");
    println!("    </dict>");
    println!("</dict>");
    Ok(())
}
