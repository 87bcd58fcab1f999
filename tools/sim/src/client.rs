//! A simulated client: logs in, connects with its ticket, walks about, and
//! keeps a [`View`] from the server's messages exactly as the real client
//! library does (it uses the same `View`). If the game registered a bot
//! behaviour for its player type, the client plays it as `tessera bots`
//! does; if the player type has `ping` and `pong` methods, it pings.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt;
use tessera::frame::decode;
use tessera::proto::client::{ClientDatagram, ClientMsg, ServerDatagram, ServerMsg};
use tessera::proto::login::{LoginReply, LoginRequest, ResumeRequest};
use tessera::proto::PROTOCOL_MAJOR;
use tessera::view::View;
use tessera::{Definitions, Value};
use tessera_baseapp::bases::ClientOut;
use tessera_game::bot::{Bot, BotBehavior, BotCall};

/// Where a client is in its session.
#[derive(Debug)]
pub enum Phase {
    /// Waiting for the login reply.
    LoggingIn,
    /// Connected to a baseapp, waiting for the welcome.
    Connecting,
    /// Its connection was lost; asking the manager where its session is.
    Resuming,
    /// In the world.
    Playing(Box<View>),
    /// Refused or disconnected, and why.
    Gone(String),
}

/// One simulated client.
#[derive(Debug)]
pub struct SimClient {
    /// Its id (also its connection id on the baseapp).
    pub id: u64,
    /// Account name.
    pub name: String,
    /// Where it is.
    pub phase: Phase,
    /// Whether it keeps walking.
    pub walking: bool,
    seq: u32,
    heading: f32,
    /// The last ping sent (pings count from 1).
    pub pinged: i64,
    /// Every pong received, in order.
    pub pongs: Vec<i64>,
    pong: Option<u16>,
    /// The entity it plays and its session token, once welcomed.
    session: Option<(tessera::EntityId, tessera::proto::Ticket)>,
    /// Sessions resumed so far.
    pub resumed: u32,
    /// Moves the server refused and pulled the client back from.
    pub corrected: u32,
    /// Updates of what it sees: positions of others, enters, leaves and
    /// property changes.
    pub updates: u64,
    /// Its player type's `ping` method, if it has one.
    ping: Option<u16>,
    /// The game's bot, if the game has one for its player type.
    bot: Option<Play>,
    /// Bot steps so far.
    steps: u64,
    /// Calls the bot asked for, to make at its next step.
    asked: Vec<BotCall>,
}

/// A game's bot and its own random source.
struct Play {
    behavior: Box<dyn BotBehavior>,
    rng: StdRng,
}

impl fmt::Debug for Play {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Play")
    }
}

impl SimClient {
    /// A client that has not logged in yet, playing `player` (a type of
    /// `defs`), with the game's bot if it has one.
    pub fn new(
        id: u64,
        heading: f32,
        defs: &Definitions,
        player: &str,
        bot: Option<Box<dyn BotBehavior>>,
    ) -> SimClient {
        let method = |name: &str| {
            defs.by_name(player)
                .and_then(|t| t.method(name))
                .map(|m| m.index)
        };
        SimClient {
            id,
            name: SimClient::credentials(id).0,
            phase: Phase::LoggingIn,
            walking: true,
            seq: 0,
            heading,
            pinged: 0,
            pongs: Vec::new(),
            pong: method("pong"),
            ping: method("ping"),
            session: None,
            resumed: 0,
            corrected: 0,
            updates: 0,
            bot: bot.map(|behavior| Play {
                behavior,
                rng: StdRng::seed_from_u64(id),
            }),
            steps: 0,
            asked: Vec::new(),
        }
    }

    /// The connection was lost: the resume request to send the manager, if
    /// the client has a session to resume.
    pub fn lost(&mut self, defs: &Definitions) -> Option<ResumeRequest> {
        let (entity, token) = self.session?;
        self.phase = Phase::Resuming;
        Some(ResumeRequest {
            protocol: PROTOCOL_MAJOR,
            defs_digest: defs.digest,
            entity,
            token,
        })
    }

    /// Whether it is getting back into its session.
    pub fn resuming(&self) -> bool {
        matches!(self.phase, Phase::Resuming)
    }

    /// The next numbered call of the player type's `ping`, while walking.
    pub fn ping(&mut self) -> Option<ClientMsg> {
        if !self.walking || self.view().is_none() {
            return None;
        }
        let method = self.ping?;
        self.pinged += 1;
        Some(ClientMsg::Call {
            method,
            args: vec![Value::Int(self.pinged)],
        })
    }

    /// Client `id`'s account name and password.
    pub fn credentials(id: u64) -> (String, String) {
        (format!("sim{id}"), format!("sim{id}-password"))
    }

    /// Its login request.
    pub fn login_request(&self, defs: &Definitions) -> LoginRequest {
        LoginRequest {
            protocol: PROTOCOL_MAJOR,
            defs_digest: defs.digest,
            name: self.name.clone(),
            password: SimClient::credentials(self.id).1,
            create: true,
        }
    }

    /// The login (or resume) answer; returns the ticket on success. A
    /// refused resume leaves the client resuming, to ask again.
    pub fn login_reply(&mut self, reply: LoginReply) -> Option<tessera::proto::Ticket> {
        match reply {
            LoginReply::Granted { ticket, .. } => {
                if self.resuming() {
                    self.resumed += 1;
                }
                self.phase = Phase::Connecting;
                Some(ticket)
            }
            LoginReply::Refused { .. } if self.resuming() => None,
            LoginReply::Refused { message, .. } => {
                self.phase = Phase::Gone(format!("login refused: {message}"));
                None
            }
        }
    }

    /// Something from the baseapp.
    pub fn receive(&mut self, out: ClientOut, defs: &Definitions) {
        match out {
            ClientOut::Close(why) => self.phase = Phase::Gone(why.to_string()),
            ClientOut::Reliable(bytes) => match decode::<ServerMsg>(&bytes) {
                Ok(ServerMsg::Welcome {
                    entity,
                    type_id,
                    pos,
                    props,
                    bounds,
                    ..
                }) => {
                    self.phase =
                        Phase::Playing(Box::new(View::new(entity, type_id, pos, &props, bounds)));
                }
                Ok(ServerMsg::Refused { reason }) => self.phase = Phase::Gone(reason),
                Ok(ServerMsg::Session { token }) => {
                    if let Phase::Playing(view) = &self.phase {
                        self.session = Some((view.me, token));
                    }
                }
                Ok(msg) => {
                    match &msg {
                        ServerMsg::Corrected { .. } => self.corrected += 1,
                        ServerMsg::Enter { .. }
                        | ServerMsg::Leave { .. }
                        | ServerMsg::Props { .. } => self.updates += 1,
                        _ => {}
                    }
                    if let ServerMsg::Call { method, args, .. } = &msg {
                        if Some(*method) == self.pong {
                            if let Some(n) = args.first().and_then(Value::as_int) {
                                self.pongs.push(n);
                            }
                        }
                    }
                    if let Phase::Playing(view) = &mut self.phase {
                        view.apply(&msg);
                    }
                    if let ServerMsg::Call {
                        entity,
                        method,
                        args,
                    } = &msg
                    {
                        self.bot_called(defs, *entity, *method, args);
                    }
                }
                Err(e) => self.phase = Phase::Gone(format!("undecodable message: {e}")),
            },
            ClientOut::Datagram(bytes) => {
                if let (Phase::Playing(view), Ok(d)) =
                    (&mut self.phase, decode::<ServerDatagram>(&bytes))
                {
                    let ServerDatagram::Positions { updates, .. } = &d;
                    self.updates += updates.len() as u64;
                    view.apply_datagram(&d);
                }
            }
        }
    }

    /// The client's view, once it plays.
    pub fn view(&self) -> Option<&View> {
        match &self.phase {
            Phase::Playing(v) => Some(v),
            _ => None,
        }
    }

    /// The server called a client method: the game's bot hears of it.
    fn bot_called(
        &mut self,
        defs: &Definitions,
        entity: tessera::EntityId,
        method: u16,
        args: &[Value],
    ) {
        let (Some(play), Phase::Playing(view)) = (self.bot.as_mut(), &self.phase) else {
            return;
        };
        let Some(name) = view
            .others
            .get(&entity)
            .map_or(Some(view.my_type), |s| Some(s.type_id))
            .and_then(|t| defs.get(t))
            .and_then(|t| t.methods.get(method as usize))
            .map(|m| m.name.clone())
        else {
            return;
        };
        let mut bot = Bot::new(view, defs, &mut play.rng, self.steps);
        play.behavior.called(&mut bot, entity, &name, args);
        self.asked.extend(bot.finish().calls);
    }

    /// The game bot's step: where it wants to walk, and the calls it makes
    /// (with those it asked for since the last step), as messages.
    pub fn play(&mut self, defs: &Definitions) -> (Option<[f32; 2]>, Vec<ClientMsg>) {
        let (Some(play), Phase::Playing(view)) = (self.bot.as_mut(), &self.phase) else {
            return (None, Vec::new());
        };
        if !self.walking {
            return (None, Vec::new());
        }
        self.steps += 1;
        let mut bot = Bot::new(view, defs, &mut play.rng, self.steps);
        play.behavior.step(&mut bot);
        let asked = bot.finish();
        let own = defs.get(view.my_type);
        let calls = std::mem::take(&mut self.asked)
            .into_iter()
            .chain(asked.calls)
            .filter_map(|c| {
                let method = own?.method(&c.method)?.index;
                Some(ClientMsg::Call {
                    method,
                    args: c.args,
                })
            })
            .collect();
        (asked.walk, calls)
    }

    /// One movement step (a tenth of a second at `speed`) toward `goal` if
    /// given, else wandering; nothing if it is not walking.
    pub fn step(
        &mut self,
        rng: &mut ChaCha8Rng,
        speed: f32,
        goal: Option<[f32; 2]>,
    ) -> Option<ClientDatagram> {
        if !self.walking {
            return None;
        }
        let Phase::Playing(view) = &mut self.phase else {
            return None;
        };
        if rng.random_ratio(1, 20) {
            self.heading += rng.random_range(-1.5..1.5);
        }
        let [x0, z0, x1, z1] = view.bounds;
        let [x, y, z] = view.my_pos;
        let d = speed * 0.1;
        if let Some([gx, gz]) = goal {
            let (dx, dz) = (gx - x, gz - z);
            let far = (dx * dx + dz * dz).sqrt();
            if far > 1e-3 {
                self.heading = dx.atan2(dz);
            }
        }
        let d = match goal {
            Some([gx, gz]) => d.min(((gx - x).powi(2) + (gz - z).powi(2)).sqrt()),
            None => d,
        };
        let (mut nx, mut nz) = (x + self.heading.sin() * d, z + self.heading.cos() * d);
        if nx < x0 + 1.0 || nx > x1 - 1.0 || nz < z0 + 1.0 || nz > z1 - 1.0 {
            self.heading += std::f32::consts::PI;
            nx = nx.clamp(x0 + 1.0, x1 - 1.0);
            nz = nz.clamp(z0 + 1.0, z1 - 1.0);
        }
        view.my_pos = [nx, y, nz];
        self.seq += 1;
        Some(ClientDatagram::Move {
            seq: self.seq,
            pos: [nx, y, nz],
            yaw: self.heading,
        })
    }
}
