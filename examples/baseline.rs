//! The framework's ceiling on this machine: a minimal actix-web app answering `GET /` with a small JSON body,
//! nothing else (no middleware, no state, no database). Scenario (a) of the load harness measures it beside
//! shopd in the same run, so every other figure can be read as a share of it.
//!
//!     cargo run --release --example baseline -- 8081     # then: curl 127.0.0.1:8081/

use actix_web::{App, HttpResponse, HttpServer, web};
use serde::Serialize;

#[derive(Serialize)]
struct Hello {
    message: &'static str,
}

async fn hello() -> HttpResponse {
    HttpResponse::Ok().json(Hello {
        message: "Hello, World!",
    })
}

fn main() -> std::io::Result<()> {
    let port = match std::env::args().nth(1) {
        None => 8081,
        Some(text) => text.parse::<u16>().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("`{text}` is not a port number (usage: baseline [PORT])"),
            )
        })?,
    };
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(|| App::new().route("/", web::get().to(hello)))
            .bind(("127.0.0.1", port))?
            .run()
            .await
    })
}
