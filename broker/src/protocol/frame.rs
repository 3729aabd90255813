//! Length-prefixed frames: a big-endian i32 size followed by that many bytes.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame size {size} is negative or larger than socket.request.max.bytes ({max})")]
    BadSize { size: i64, max: u32 },
    #[error("connection closed in the middle of a frame ({got} of {want} bytes)")]
    Truncated { got: usize, want: usize },
    #[error("i/o error reading frame: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame. `Ok(None)` is a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: u32,
) -> Result<Option<BytesMut>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(FrameError::Truncated { got, want: 4 });
        }
        got += n;
    }
    let size = i32::from_be_bytes(len);
    if size < 0 || size as u32 > max {
        return Err(FrameError::BadSize {
            size: size as i64,
            max,
        });
    }
    let size = size as usize;
    let mut buf = BytesMut::zeroed(size);
    let mut filled = 0;
    while filled < size {
        let n = r.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(FrameError::Truncated {
                got: filled,
                want: size,
            });
        }
        filled += n;
    }
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_frames_and_rejects_bad_sizes() {
        let mut data: &[u8] = &[0, 0, 0, 3, 1, 2, 3];
        let f = read_frame(&mut data, 100).await.unwrap().unwrap();
        assert_eq!(&f[..], &[1, 2, 3]);
        assert!(read_frame(&mut data, 100).await.unwrap().is_none());

        let mut huge: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut huge, 100).await,
            Err(FrameError::BadSize { .. })
        ));
        let mut neg: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut neg, 100).await,
            Err(FrameError::BadSize { .. })
        ));
        let mut short: &[u8] = &[0, 0, 0, 9, 1];
        assert!(matches!(
            read_frame(&mut short, 100).await,
            Err(FrameError::Truncated { .. })
        ));
    }
}
